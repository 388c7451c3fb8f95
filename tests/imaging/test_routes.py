"""The imaging routes through the whole app (auth, CSRF, audit), in-process over httpx's ASGI transport.

The app's lifespan does not run under ASGITransport, so the test puts the shared resources on ``app.state`` the way
the lifespan does, and mounts the imaging routes itself (until app.py mounts them).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlmodel import select

from rcp.app import create_app
from rcp.auth.models import AuditEvent
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging import routes as imaging_routes
from rcp.imaging.demo import load_demo_studies, synthetic_patient
from rcp.imaging.frames import decode_wire
from rcp.imaging.service import ImagingService
from rcp.imaging.synthetic import SyntheticPatient
from rcp.scheduling.models import Case, Patient
from tests.factories import HOSPITAL, MadeMeeting, MadeUser, credentials, make_clinician, make_meeting
from tests.fixtures.dicom_data import make_patient, reference_file


@pytest.fixture(scope="module")
async def imaging_app(settings: Settings, db: Database) -> AsyncIterator[tuple[Any, ImagingService]]:
    app = create_app(settings, database=db)
    if not any(getattr(r, "endpoint", None) is imaging_routes.frame for r in app.router.routes):
        app.router.routes[:0] = imaging_routes.routes
    service = await ImagingService.open(settings, database=db, workers=2)
    app.state.settings = settings
    app.state.db = db
    app.state.imaging = service
    yield app, service
    await service.close()


async def _client(app: Any, user: MadeUser) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rcp.test", timeout=60)
    response = await client.post("/api/session", json=credentials(user.username, user.password))
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


async def _meeting_with_a_case(db: Database) -> tuple[MadeMeeting, int, SyntheticPatient]:
    """A meeting of the test's own with one case, and its patient as the synthetic CTs name them."""
    meeting = await make_meeting(db, cases=1, invite=("radiologist",))
    case = meeting.cases[0]
    async with db.session() as s:
        patient = await s.get(Patient, case.patient.id)
        assert patient is not None
    synthetic = synthetic_patient(case.patient.ipp, HOSPITAL, patient.family_name, patient.given_names,
                                  patient.birth_date, patient.sex)
    return meeting, case.id, synthetic


async def test_case_studies_attach_view_and_frames(imaging_app: tuple[Any, ImagingService], db: Database) -> None:
    app, service = imaging_app
    meeting, case_id, demo = await _meeting_with_a_case(db)
    ipp = demo.patient_id
    stored = await load_demo_studies(service.archive, [demo], slices=6, size=64)
    assert len(stored[ipp]) == 2
    # Running the demo twice stores nothing twice.
    assert await load_demo_studies(service.archive, [demo], slices=6, size=64) == stored

    radiologist = await _client(app, meeting.invitee("radiologist"))
    outsider = await _client(app, await make_clinician(db, "gastroenterologist"))  # not invited
    try:
        listing = await radiologist.get(f"/api/cases/{case_id}/studies")
        assert listing.status_code == 200, listing.text
        studies = listing.json()
        assert {s["study_uid"] for s in studies} == set(stored[ipp])
        assert all(s["modalities"] == ["CT"] and s["image_count"] == 6 and not s["attached"] for s in studies)
        assert (await outsider.get(f"/api/cases/{case_id}/studies")).status_code == 404

        current = max(studies, key=lambda s: s["date"])["study_uid"]
        # Not attached yet: visible only through the case.
        assert (await radiologist.get(f"/api/imaging/studies/{current}/series")).status_code == 404
        series = await radiologist.get(f"/api/imaging/studies/{current}/series?case_id={case_id}")
        assert series.status_code == 200 and len(series.json()) == 1

        # Only the board's coordinators change a case's studies (issue 13, finding 9).
        refused = await radiologist.post(f"/api/cases/{case_id}/studies", json={"study_uids": [current]})
        assert refused.status_code == 403, refused.text
        coordinator = await _client(app, meeting.coordinator)
        try:
            attach = await coordinator.post(f"/api/cases/{case_id}/studies", json={"study_uids": [current]})
            assert attach.status_code == 200, attach.text
            assert attach.json()["study_uids"] == [current]
            bogus = await coordinator.post(f"/api/cases/{case_id}/studies", json={"study_uids": ["1.2.3.4.5"]})
            assert bogus.status_code == 404
        finally:
            await coordinator.aclose()

        series_uid = (await radiologist.get(f"/api/imaging/studies/{current}/series")).json()[0]["series_uid"]
        descriptor = await radiologist.get(f"/api/imaging/studies/{current}/series/{series_uid}")
        assert descriptor.status_code == 200
        body = descriptor.json()
        assert set(body) == {"study_uid", "series_uid", "modality", "description", "series_number", "study_date",
                             "frames"}
        frame_info = body["frames"][0]
        assert set(frame_info) == {"sop_uid", "frame", "url", "rows", "columns", "dtype", "samples", "photometric",
                                   "pixel_spacing", "position", "orientation", "slice_location",
                                   "instance_number", "window"}
        response = await radiologist.get(frame_info["url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-rcp-frame"
        assert response.headers["x-rcp-encoding"] == "delta16-deflate"
        assert "no-store" in response.headers["cache-control"]
        etag = response.headers["etag"]
        values = decode_wire(response.content, "delta16-deflate", frame_info["rows"], frame_info["columns"])
        assert values.shape == (64, 64) and values.dtype == np.int16 and values.min() >= -2048
        again = await radiologist.get(frame_info["url"], headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""

        assert (await outsider.get(frame_info["url"])).status_code == 404
        assert (await outsider.get(f"/api/imaging/studies/{current}/series/{series_uid}")).status_code == 404

        prefetch = await radiologist.post(f"/api/cases/{case_id}/prefetch")
        assert prefetch.status_code == 202
        await service.prefetcher.wait(f"case:{case_id}")
        progress = (await radiologist.get(f"/api/cases/{case_id}/prefetch")).json()
        assert progress["state"] == "done" and progress["fraction"] == 1.0
    finally:
        await radiologist.aclose()
        await outsider.aclose()
    async with db.session() as s:
        events = (await s.exec(select(AuditEvent).where(AuditEvent.event_code == "110103"))).all()
    opened = [e for e in events if current in e.what and "series" in e.what]
    assert opened and opened[-1].patient_id == meeting.cases[0].patient.id


async def test_import_through_the_api(imaging_app: tuple[Any, ImagingService], db: Database) -> None:
    app, _service = imaging_app
    meeting, case_id, own = await _meeting_with_a_case(db)
    good = reference_file("MR_small.dcm", own)
    foreign = reference_file("CT_small.dcm", make_patient())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IMG0001", good)
    coordinator = await _client(app, meeting.coordinator)
    try:
        response = await coordinator.post(
            f"/api/cases/{case_id}/imports",
            files=[("files", ("cd.zip", buffer.getvalue(), "application/zip")),
                   ("files", ("autre.dcm", foreign, "application/dicom")),
                   ("files", ("lettre.pdf", b"%PDF-1.4 not an image" * 10, "application/pdf"))],
        )
        # A file of another patient refuses the whole import (issue 13): nothing stored, the identities shown.
        assert response.status_code == 422, response.text
        results = {r["name"]: r for r in response.json()}
        assert not results["cd.zip/IMG0001"]["ok"] and "Not stored" in results["cd.zip/IMG0001"]["message"]
        assert not results["autre.dcm"]["ok"] and results["autre.dcm"]["identity"]["fields"][0] == "identifier"
        assert (await coordinator.get(f"/api/cases/{case_id}/studies")).json() == []
        response = await coordinator.post(
            f"/api/cases/{case_id}/imports",
            files=[("files", ("cd.zip", buffer.getvalue(), "application/zip")),
                   ("files", ("lettre.pdf", b"%PDF-1.4 not an image" * 10, "application/pdf"))],
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert all(set(r) == {"name", "ok", "message", "study_uid", "warning"} for r in body)
        results = {r["name"]: r for r in body}
        assert results["cd.zip/IMG0001"]["ok"] and results["cd.zip/IMG0001"]["warning"] is None
        assert not results["lettre.pdf"]["ok"]
        assert results["cd.zip/IMG0001"]["study_uid"]
        case = (await coordinator.get(f"/api/cases/{case_id}/studies")).json()
        assert [s["attached"] for s in case] == [True]
        # Without the CSRF header, a cookie-authenticated upload is refused.
        del coordinator.headers["X-CSRF-Token"]
        refused = await coordinator.post(f"/api/cases/{case_id}/imports",
                                         files=[("files", ("a.dcm", good, "application/dicom"))])
        assert refused.status_code == 403
    finally:
        await coordinator.aclose()


async def test_agenda_prefetch(imaging_app: tuple[Any, ImagingService], db: Database) -> None:
    app, service = imaging_app
    meeting, case_id, demo = await _meeting_with_a_case(db)
    stored = await load_demo_studies(service.archive, [demo], slices=3, size=32)
    async with db.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        case.study_uids = stored[demo.patient_id]
        s.add(case)
        meeting_id = case.meeting_id
    keys = await service.prefetch_upcoming_meetings(db, horizon=timedelta(days=30))
    assert f"meeting:{meeting_id}" in keys
    coordinator = await _client(app, meeting.coordinator)
    try:
        started = await coordinator.post(f"/api/meetings/{meeting_id}/prefetch")
        assert started.status_code == 202
        await service.prefetcher.wait(f"meeting:{meeting_id}")
        progress = (await coordinator.get(f"/api/meetings/{meeting_id}/prefetch")).json()
        assert progress["state"] == "done" and progress["errors"] == []
        assert progress["instances_done"] == progress["instances_total"] >= 6
    finally:
        await coordinator.aclose()
    # Only the cases the room will offer are prefetched (rcp.scheduling.agenda): not a withdrawn one.
    async with db.session() as s:
        case = await s.get(Case, case_id)
        assert case is not None
        case.status = "withdrawn"
        s.add(case)
    assert f"meeting:{meeting_id}" not in await service.prefetch_upcoming_meetings(db, horizon=timedelta(days=30))
