"""Imaging: the patient's shared imaging file, found in the PACS and shown at full fidelity in the browser.

Map of the package:

    archive     the ``Archive`` interface and ``open_archive(settings)`` (DICOMweb PACS or local folder)
    dicomweb    QIDO-RS / WADO-RS / STOW-RS client (httpx), with Orthanc's quirks handled
    local       the local archive: files in the data folder, indexed in ``archive_instances``
    frames      decoding to modality values, and the lossless wire format (documented there)
    cache       encoded frames in memory and on disk
    prefetch    series pulled into the cache before anyone waits
    service     ``ImagingService``: the one object the app keeps on ``app.state.imaging``
    rejections  IHE IOCM rejection notes read back: what the series and study lists leave out
    validation  checks on imported files (zip bombs, truncation, patient match); ``imports`` runs an import
    synthetic   realistic synthetic CT/MR studies; ``demo`` loads them for ``rcp demo``
    routes      the HTTP routes
"""

from __future__ import annotations

from rcp.imaging.archive import Archive, ArchiveUnavailable, open_archive
from rcp.imaging.frames import EncodedFrame, decode_wire
from rcp.imaging.service import ImagingService

__all__ = ["Archive", "ArchiveUnavailable", "EncodedFrame", "ImagingService", "decode_wire", "open_archive"]
