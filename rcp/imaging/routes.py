"""HTTP routes of the imaging domain (the wire format is documented in ``rcp.imaging.frames``).

    GET  /api/imaging/studies/{study_uid}/series                         series of a study
    GET  /api/imaging/studies/{study_uid}/series/{series_uid}            series descriptor (frames, geometry)
    GET  /api/imaging/frames/{study_uid}/{series_uid}/{sop_uid}/{frame}  one frame, lossless, cacheable
    GET  /api/cases/{case_id}/studies                                    the case patient's studies in the archive
    POST /api/cases/{case_id}/studies                                    attach (and detach) studies
    POST /api/cases/{case_id}/imports                                    upload DICOM files or a zip
    POST /api/cases/{case_id}/prefetch, GET same                         prefetch the case's studies; progress
    POST /api/meetings/{meeting_id}/prefetch, GET same                   prefetch the whole agenda; progress

Frames and studies are served only to users who may see the patient (``rcp.scheduling.access``); a series list,
a study opened (its series descriptor read) and the first frame read of a grant are audit events (DICOM PS3.15
A.5.3.2 "DICOM Instances Accessed") naming the patient. Only the board's coordinators (and admins) change a case's
studies (attach, detach, import), and not once its meeting is closed. The frame route is the hot path (a 300-slice
series is 300 requests): an authorisation, once granted, is remembered for a minute per user and study, so cached
frames are served without touching the database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from rcp.auth import audit
from rcp.clock import utcnow
from rcp.db import Database
from rcp.errors import BadRequest, NotFound
from rcp.http import current_user, read_json
from rcp.identifiers import ServicePatient, ins_may_leave, is_ins, is_uid
from rcp.imaging.archive import StudySummary
from rcp.imaging.frames import frame_etag
from rcp.imaging.imports import import_files
from rcp.imaging.service import ImagingService
from rcp.imaging.uploads import received_files
from rcp.imaging.validation import Reconciliation
from rcp.openapi import ApiRoute
from rcp.scheduling import access
from rcp.scheduling.access import Action
from rcp.scheduling.agenda import meeting_agenda
from rcp.scheduling.models import Case, Patient, PatientIdentifier

__all__ = ["StudyGrants", "routes"]

FRAME_MEDIA_TYPE = "application/x-rcp-frame"
#: Frames never go to the browser's disk cache (a shared workstation keeps it after the session): the viewer keeps
#: decoded frames in memory (web/static/js/frames.js) for as long as the tab lives.
FRAME_CACHE = "private, no-store"


def grant_holder(user: Any) -> str:
    """Whom a grant is for: the user *and* the session (a join link's session, confined to its meeting, must not
    inherit what the same person's own sign-in was granted, and a new sign-in starts with none)."""
    return f"{int(user.id)}/{getattr(user, 'via', '')}/{getattr(user, 'session_id', '')}/" \
           f"{getattr(user, 'meeting_scope', None) or ''}"


class StudyGrants:
    """Recently granted (session, study) pairs, so the frame hot path skips the database for a minute."""

    def __init__(self, ttl_s: float = 60.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._until: dict[tuple[str, str], float] = {}

    def allowed(self, holder: str, study_uid: str) -> bool:
        until = self._until.get((holder, study_uid))
        return until is not None and until > time.monotonic()

    def grant(self, holder: str, study_uid: str) -> None:
        if len(self._until) >= self.max_entries:
            now = time.monotonic()
            self._until = {k: v for k, v in self._until.items() if v > now}
            if len(self._until) >= self.max_entries:
                self._until.clear()
        self._until[(holder, study_uid)] = time.monotonic() + self.ttl_s


def _service(request: Request) -> ImagingService:
    service: ImagingService | None = getattr(request.app.state, "imaging", None)
    if service is None:
        raise NotFound("Imaging is not configured on this server.")
    return service


def _grants(service: ImagingService) -> StudyGrants:
    grants: StudyGrants | None = getattr(service, "grants", None)
    if grants is None:
        grants = StudyGrants()
        service.grants = grants  # type: ignore[attr-defined]
    return grants


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _uid(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not is_uid(value):
        raise NotFound("No such image: the address holds a malformed UID.")
    return value


async def _service_patient(session: Any, patient_id: int) -> ServicePatient:
    """The case's patient as the identity rule reads it (``rcp.identifiers``)."""
    patient = await session.get(Patient, patient_id)
    rows = (await session.exec(select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id))).all()
    # IPPs with their hospital first (what PACS index on), then the national INS.
    ordered = sorted(rows, key=lambda r: (r.system != "IPP", r.system, r.value))
    if patient is None:
        return ServicePatient(identifiers=())
    return ServicePatient.of(patient, ordered)


async def _authorise_study(request: Request, service: ImagingService, study_uid: str,
                           *, what: str | None = None) -> tuple[Any, bool]:
    """The user, and whether this was a fresh grant. NotFound when not allowed.

    ``what`` (e.g. "series list") makes the check and its audit one step: the read is recorded (DCM 110103)
    naming the patient of the case the study belongs to, whether the grant was fresh or remembered.
    """
    user = current_user(request)
    grants = _grants(service)
    fresh = not grants.allowed(grant_holder(user), study_uid)
    if not fresh and what is None:
        return user, False
    async with _db(request).session() as s:
        case = await _case_with_study(s, user, study_uid, request.query_params.get("case_id", ""))
        if case is not None and study_uid not in (case.study_uids or []):
            # A study of the case's patient not yet attached: visible to those who see the case (to pick it).
            patient = await _service_patient(s, case.patient_id)
            if not await service.study_owner(patient, study_uid):
                case = None
        if case is None:
            raise access.NotVisible("No such study among your patients.",
                                    alert=access.Alert(Action.view_patient, f"study {study_uid}"))
        if what is not None:
            await audit.record(s, request=request, user=user, event="dicom_instances_accessed", action="R",
                               outcome=0, patient_id=case.patient_id, meeting_id=case.meeting_id,
                               what=f"study {study_uid} {what}")
    grants.grant(grant_holder(user), study_uid)
    return user, fresh


# --- series and frames ----------------------------------------------------------------------------------------


async def study_series(request: Request) -> Response:
    service = _service(request)
    study_uid = _uid(request, "study_uid")
    await _authorise_study(request, service, study_uid, what="series list")
    series = await service.study_series(study_uid)
    return JSONResponse([
        {"series_uid": s.series_uid, "modality": s.modality, "description": s.description,
         "series_number": s.series_number, "instance_count": s.instance_count,
         "url": f"/api/imaging/studies/{study_uid}/series/{s.series_uid}"}
        for s in series
    ])


async def series_descriptor(request: Request) -> Response:
    service = _service(request)
    study_uid, series_uid = _uid(request, "study_uid"), _uid(request, "series_uid")
    await _authorise_study(request, service, study_uid, what=f"series {series_uid}")
    descriptor = await service.descriptor(study_uid, series_uid)
    return JSONResponse(descriptor)


async def _case_with_study(session: Any, user: Any, study_uid: str, case_id: str) -> Case | None:
    """The visible case the study is read through: ``case_id`` when given (its patient's study, attached or
    not, is checked by the caller), else a visible case the study is attached to."""
    if case_id.isdigit():
        case, _meeting = await access.require_case(session, user, int(case_id), Action.view_patient)
        return case
    return await access.may_see_study(session, user, study_uid)


def _etag_matches(header: str, etag: str) -> bool:
    # RFC 9110 13.1.2: If-None-Match uses the weak comparison.
    if header.strip() == "*":
        return True
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates


async def frame(request: Request) -> Response:
    service = _service(request)
    study_uid, series_uid, sop_uid = (_uid(request, n) for n in ("study_uid", "series_uid", "sop_uid"))
    number = int(request.path_params["frame"])
    grants = _grants(service)
    if not grants.allowed(grant_holder(current_user(request)), study_uid):
        # A fresh grant: its first frame read is recorded, naming the patient; the next minute's frames are not.
        await _authorise_study(request, service, study_uid, what="frames")
    etag = frame_etag(sop_uid, number)
    headers = {"ETag": etag, "Cache-Control": FRAME_CACHE}
    if _etag_matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    encoded = await service.frame(study_uid, series_uid, sop_uid, number)
    headers.update({"X-Rcp-Encoding": encoded.encoding, "X-Rcp-Rows": str(encoded.rows),
                    "X-Rcp-Columns": str(encoded.columns)})
    return Response(encoded.body, media_type=FRAME_MEDIA_TYPE, headers=headers)


# --- a case's studies -----------------------------------------------------------------------------------------


def _study_json(study: StudySummary, attached: set[str]) -> dict[str, Any]:
    return {
        "study_uid": study.study_uid,
        "date": study.study_date,
        "time": study.study_time,
        "modalities": list(study.modalities),
        "description": study.description,
        "accession": study.accession,
        "series_count": study.series_count,
        "image_count": study.instance_count,
        "attached": study.study_uid in attached,
    }


async def case_studies(request: Request) -> Response:
    service = _service(request)
    user = current_user(request)
    case_id = int(request.path_params["case_id"])
    async with _db(request).session() as s:
        case = await access.read_case(s, user, case_id, what="imaging studies of case {case}", request=request)
        patient = await _service_patient(s, case.patient_id)
    studies = await service.patient_studies(patient)
    return JSONResponse([_study_json(st, set(case.study_uids or [])) for st in studies])


class AttachIn(BaseModel):
    study_uids: list[str] = Field(default_factory=list, max_length=200)
    detach: list[str] = Field(default_factory=list, max_length=200)


async def attach_studies(request: Request) -> Response:
    service = _service(request)
    user = current_user(request)
    case_id = int(request.path_params["case_id"])
    async with _db(request).session() as s:
        await access.require_case(s, user, case_id, Action.change_studies)  # at the door, before the body
    data = await read_json(request, AttachIn)
    for uid in [*data.study_uids, *data.detach]:
        if not is_uid(uid):
            raise BadRequest("study_uids must be DICOM UIDs (digits and dots).")
    async with _db(request).session() as s:
        case, _meeting = await access.require_case(s, user, case_id, Action.change_studies)
        patient = await _service_patient(s, case.patient_id)
    for uid in data.study_uids:
        if not await service.study_owner(patient, uid):
            # Whose study it is, if anyone's, is not said (the caller may not see that patient).
            raise NotFound("A study to attach is not in the archive for this case's patient.")
    async with _db(request).session() as s:
        case, _meeting = await access.require_case(s, user, case_id, Action.change_studies)
        current = [u for u in (case.study_uids or []) if u not in set(data.detach)]
        current += [u for u in data.study_uids if u not in current]
        case.study_uids = current
        case.updated_at = utcnow()
        s.add(case)
        await audit.record(s, request=request, user=user, event="patient_record", action="U", outcome=0,
                           patient_id=case.patient_id, meeting_id=case.meeting_id,
                           what=f"case {case_id} imaging studies attached")
    if current:
        service.prefetch(f"case:{case_id}", current)
    return JSONResponse({"study_uids": current})


async def imports(request: Request) -> Response:
    service = _service(request)
    user = current_user(request)
    case_id = int(request.path_params["case_id"])
    # ?reconcile=true&confirm=<confirmation>: file another hospital's images under the case's patient, as shown
    # beside the refused file (rcp.imaging.reconcile); the confirmation carries no patient data.
    reconcile = request.query_params.get("reconcile", "").lower() in {"1", "true", "yes"}
    confirm = request.query_params.get("confirm", "").strip()
    if reconcile and not confirm:
        raise BadRequest("Reconciling needs the confirmation shown beside the refused file (confirm=...).",
                         fields={"confirm": "required with reconcile=true"})
    settings = request.app.state.settings
    async with _db(request).session() as s:
        # At the door, before the upload is read.
        case, meeting = await access.require_case(s, user, case_id, Action.import_images)
        if reconcile:
            case, meeting = await access.require_case(s, user, case_id, Action.reconcile_import)
        may_reconcile = await access.allows(s, user, Action.reconcile_import, meeting)
        expected = await _service_patient(s, case.patient_id)
        record = await s.get(Patient, case.patient_id)
    # The INS goes into reconciled files only for a qualified identity (RNIV; rcp.identifiers.ins_may_leave).
    ins = next((i for i in expected.identifiers if is_ins(i.system)), None)
    shared = ins if ins is not None and record is not None and ins_may_leave(record.identity_status) else None
    reconciliation = Reconciliation(secret=settings.secret_key, case_id=case_id, at=utcnow(),
                                    confirm=confirm if reconcile else "", ins=shared.value if shared else "",
                                    ins_oid=shared.assigner if shared else "") if may_reconcile else None
    # The body itself is bounded by the limit this route declares (body_limit="upload" in the route table), and
    # read only once the process has a place for it (503 with Retry-After when its imports are full).
    limit = int(settings.max_upload_bytes)
    async with service.import_gate.admitted(), \
            received_files(request, folder=Path(settings.data_dir) / "uploads") as uploads:
        report = await import_files(service, uploads, expected, max_total_bytes=limit * 4,
                                    reconciliation=reconciliation)
    async with _db(request).session() as s:
        case, _meeting = await access.require_case(s, user, case_id, Action.import_images)
        attached = list(case.study_uids or [])
        for uid in report.matching_study_uids:
            if uid not in attached:
                attached.append(uid)
        if attached != list(case.study_uids or []):
            case.study_uids = attached
            case.updated_at = utcnow()
            s.add(case)
        body = report.as_json()
        await audit.record(s, request=request, user=user, event="import", action="C",
                           outcome=0 if body["refused"] == 0 else 4, patient_id=case.patient_id,
                           meeting_id=case.meeting_id,
                           what=f"case {case_id}: {body['imported']} imported, {body['refused']} refused"
                                + (" (import refused: nothing stored)" if report.refused else "")
                                + (f", {body['reconciled']} reconciled from another identity domain to the case's "
                                   "patient by explicit choice (IHE IRW; originals in Original Attributes Sequence)"
                                   if body["reconciled"] else "")
                                + (" (reconciliation asked)" if reconcile and not body["reconciled"] else ""))
    if report.matching_study_uids:
        service.prefetch(f"case:{case_id}", attached)
    # The wire contract is the per-file list; counts and attached studies are for the audit and the case page.
    # 422 when the import was refused as a whole: nothing of it was stored.
    return JSONResponse(body["results"], status_code=422 if report.refused else 200)


# --- prefetch -------------------------------------------------------------------------------------------------


def _progress_json(service: ImagingService, key: str) -> dict[str, Any]:
    progress = service.prefetch_progress(key)
    return progress.as_json() if progress is not None else {"key": key, "state": "idle", "fraction": 0.0,
                                                              "errors": []}


async def case_prefetch(request: Request) -> Response:
    service = _service(request)
    user = current_user(request)
    case_id = int(request.path_params["case_id"])
    async with _db(request).session() as s:
        # Warming the cache reads nothing out: whoever may view the case's images may warm them.
        case, _meeting = await access.require_case(s, user, case_id, Action.view_patient)
    key = f"case:{case_id}"
    if request.method == "POST" and case.study_uids:
        service.prefetch(key, list(case.study_uids))
    return JSONResponse(_progress_json(service, key), status_code=202 if request.method == "POST" else 200)


async def meeting_prefetch(request: Request) -> Response:
    service = _service(request)
    user = current_user(request)
    meeting_id = int(request.path_params["meeting_id"])
    async with _db(request).session() as s:
        await access.require_meeting(s, user, meeting_id, Action.view_meeting)
        # The cases the room will offer (rcp.scheduling.agenda): not those deferred or withdrawn.
        cases = [e.case for e in (await meeting_agenda(s, meeting_id)).on_agenda]
    key = f"meeting:{meeting_id}"
    if request.method == "POST":
        studies = [uid for case in cases for uid in (case.study_uids or [])]
        if studies:
            service.prefetch(key, studies)
    return JSONResponse(_progress_json(service, key), status_code=202 if request.method == "POST" else 200)


routes: list[BaseRoute] = [
    ApiRoute("/api/imaging/studies/{study_uid}/series", study_series, method="GET",
             summary="Series of a study", tag="imaging", query={"case_id": "a case whose patient owns the study"}),
    ApiRoute("/api/imaging/studies/{study_uid}/series/{series_uid}", series_descriptor, method="GET",
             summary="Series descriptor: frames, geometry, windows (audited)", tag="imaging",
             query={"case_id": "a case whose patient owns the study"}),
    ApiRoute("/api/imaging/frames/{study_uid}/{series_uid}/{sop_uid}/{frame:int}", frame, method="GET",
             summary="One frame, lossless (X-Rcp-Encoding), never cached on disk", tag="imaging",
             media_type=FRAME_MEDIA_TYPE, query={"case_id": "a case whose patient owns the study"}),
    ApiRoute("/api/cases/{case_id:int}/studies", case_studies, method="GET",
             summary="The case patient's studies in the archive", tag="imaging"),
    ApiRoute("/api/cases/{case_id:int}/studies", attach_studies, method="POST", summary="Attach or detach studies",
             tag="imaging", body=AttachIn),
    ApiRoute("/api/cases/{case_id:int}/imports", imports, method="POST",
             summary="Import DICOM files or a zip (multipart, field 'files')", tag="imaging",
             media_type="multipart/form-data", body_limit="upload"),
    ApiRoute("/api/cases/{case_id:int}/prefetch", case_prefetch, method="POST",
             summary="Prefetch the case's studies into the frame cache", tag="imaging", status=202),
    ApiRoute("/api/cases/{case_id:int}/prefetch", case_prefetch, method="GET", summary="Prefetch progress",
             tag="imaging"),
    ApiRoute("/api/meetings/{meeting_id:int}/prefetch", meeting_prefetch, method="POST",
             summary="Prefetch the whole agenda", tag="imaging", status=202),
    ApiRoute("/api/meetings/{meeting_id:int}/prefetch", meeting_prefetch, method="GET",
             summary="Agenda prefetch progress", tag="imaging"),
]
