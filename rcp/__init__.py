"""RCP collaboration service: virtual multidisciplinary tumour-board meetings."""

__version__ = "0.1.0"

# Path ids bounded to 64 bits before any route is compiled (rcp/ids.py).
from rcp import ids as _ids  # noqa: F401
