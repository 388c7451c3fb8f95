"""RCP collaboration service: virtual multidisciplinary tumour-board meetings."""

__version__ = "0.1.0"
