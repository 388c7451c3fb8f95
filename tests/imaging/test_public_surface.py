"""The names other packages import from rcp.imaging stay put (httpx pins its public surface the same way)."""

from __future__ import annotations

import rcp.imaging
from rcp.imaging import routes


def test_public_names() -> None:
    assert rcp.imaging.__all__ == ["Archive", "ArchiveUnavailable", "EncodedFrame", "ImagingService", "decode_wire",
                                   "open_archive"]
    for name in rcp.imaging.__all__:
        assert hasattr(rcp.imaging, name)


def test_route_table() -> None:
    table = {(route.path, method) for route in routes.routes for method in getattr(route, "methods", None) or ()}
    assert ("/api/imaging/frames/{study_uid}/{series_uid}/{sop_uid}/{frame:int}", "GET") in table
    assert ("/api/imaging/studies/{study_uid}/series/{series_uid}", "GET") in table
    assert ("/api/cases/{case_id:int}/studies", "POST") in table
    assert ("/api/cases/{case_id:int}/imports", "POST") in table
    assert ("/api/meetings/{meeting_id:int}/prefetch", "POST") in table
