"""HTTP edges of the minutes: the decision draft (field by field), signature, corrections, fiche and minutes.

JSON under ``/api`` for the room's decision form (``web/static/js/decision.js``); printable pages and PDFs for
people. Access follows ``rcp.scheduling.access`` (invited participants and the board's coordinators; others get
404), every read of patient data is written to the audit trail, and signing asks for the signer's password again
(a signature is a medical act: the session alone is not enough; rcp.auth.reauth).

Who signs is the signed-in account (rcp.minutes.versions.check_signer): a physician invited to the meeting and
present when the case was discussed (its attendance record, frozen when each discussion ends, and the discussion
under way: rcp.scheduling.attendance, rcp.room.decisions.room_attendees), from their own sign-in —
a join-link (guest) session or a service token never signs. The signer's rules run before the password is checked,
so the password is the last thing that can refuse: the same refusal for any wrong password, throttled and audited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rcp import i18n, mail
from rcp.auth import audit
from rcp.auth.models import Role
from rcp.auth.reauth import reauthenticate
from rcp.auth.throttle import Throttled
from rcp.clock import as_utc
from rcp.errors import Invalid, NotFound, RcpError
from rcp.http import current_user, path_int, read_json
from rcp.ids import MAX_ID
from rcp.minutes import cda, render, staging, store
from rcp.minutes.fiche import AttendeeRecord, Fiche
from rcp.minutes.models import WritebackJob
from rcp.minutes.versions import FieldConflict, NotAllowedToSign, SignedVersion, check_signer, thaw
from rcp.openapi import ApiRoute
from rcp.scheduling import access
from rcp.scheduling.access import Action
from rcp.scheduling.agenda import meeting_agenda
from rcp.scheduling.models import Board, Case, Patient
from rcp.scheduling.quorum_statement import quorum_statement
from rcp.scheduling.specialties import SPECIALTIES
from rcp.scheduling.specialties import specialty as specialty_of

__all__ = ["routes"]

log = logging.getLogger(__name__)
_KEYS = frozenset(s.key for s in SPECIALTIES)


class FieldEdit(BaseModel):
    value: Any = None
    #: The version of the field the editor started from (0 for a field nobody edited yet).
    base_version: int = Field(ge=0, le=MAX_ID)


class SignRequest(BaseModel):
    #: The signer's password and second-factor code (rcp.auth.reauth); both may be left out while the session's
    #: five-minute signing window is open.
    password: str = Field(default="", max_length=200)
    code: str = Field(default="", max_length=40)
    #: The draft revision the signer read (``draft.revision`` of GET decision).
    seen_revision: int = Field(ge=0)


class AmendRequest(BaseModel):
    password: str = Field(default="", max_length=200)
    code: str = Field(default="", max_length=40)
    reason: str = Field(min_length=1, max_length=2000)
    replaces: int = Field(ge=1)
    #: The corrected fields (name -> new value, as PUT .../fields/{name} takes them): a signed draft is not
    #: editable, so the correction carries its changes.
    changes: dict[str, Any] = Field(default_factory=dict)


def _version_json(stored: store.StoredVersion, *, content: bool = False) -> dict[str, Any]:
    v = stored.version
    out: dict[str, Any] = {"id": stored.id, "number": v.number, "sha256": v.sha256, "signed_by": v.signed_by,
                           "signer": {"user_id": v.signed_by, "name": v.signer.name if v.signer else ""},
                           "signed_at": v.signed_at.isoformat(), "replaces": v.replaces, "reason": v.reason,
                           "intact": v.verify()}
    if content:
        out["content"] = thaw(v.content)
    return out


def _job_json(job: WritebackJob) -> dict[str, Any]:
    return {"id": job.id, "version_id": job.version_id, "kind": job.kind, "status": job.status,
            "attempts": job.attempts, "last_error": job.last_error, "stored_sop_uid": job.stored_sop_uid,
            "next_attempt_at": as_utc(job.next_attempt_at).isoformat()}


def _own_sign_in(user: Any) -> None:
    """A signature comes from a person's own sign-in: not a join link's guest session, not a service token."""
    if getattr(user, "via", "") != "session" or getattr(user, "meeting_scope", None) is not None \
            or getattr(user, "role", "") == Role.guest:
        raise NotAllowedToSign("Decisions are signed from a physician's own sign-in: a session opened by a join "
                               "link (guest) or a service token cannot sign.")


async def _may_sign(session: AsyncSession, user: Any, fiche: Fiche | None, invited_ids: frozenset[int]
                    ) -> dict[str, Any]:
    """Whether the caller may sign this decision now (the form shows the button to them), and if not, why."""
    if fiche is None:
        return {"may_sign": False, "reason": ""}
    try:
        _own_sign_in(user)
        check_signer(fiche, await store.signer_account(session, user.id), invited_ids=invited_ids)
    except NotAllowedToSign as exc:
        return {"may_sign": False, "reason": exc.message}
    return {"may_sign": True, "reason": ""}


async def _refused(request: Request, case: Case, act: str, error: RcpError) -> None:
    """A signature refused by its rules: recorded (DCM 110113) in its own transaction, the signature's rolls back."""
    async with request.app.state.db.session() as s:
        await audit.record(s, event="security_alert", action="E", outcome=4, request=request,
                           patient_id=case.patient_id, meeting_id=case.meeting_id,
                           what=f"{act} of case {case.id} refused: {error.code}")


async def _state(session: AsyncSession, case_id: int,
                 attendees: tuple[AttendeeRecord, ...] | None = None, *, user: Any = None) -> dict[str, Any]:
    """The decision as the form needs it: draft with versions, quorum, gaps before signing, versions, write-back.

    ``attendees`` (see :func:`_attendees`) makes the quorum shown the one a signature checks."""
    context = await store.load_context(session, case_id)
    draft = await store.load_draft(session, case_id)
    versions = await store.list_versions(session, case_id)
    out: dict[str, Any] = {"case_id": case_id, "meeting_id": context.meeting.id, "draft": draft.as_json(),
                           "versions": [_version_json(v) for v in versions], "writebacks": [], "missing": {},
                           "staging_choices": staging.choices(i18n.gettext)}
    try:
        fiche = store.build_fiche(context, draft, attendees)
    except Invalid as exc:
        out["missing"] = exc.fields
        fiche = None
    if fiche is not None:
        quorum = fiche.quorum()
        out["quorum"] = {"met": quorum.met, "status": fiche.quorum_status.as_json(),
                         # The room's line, worded as the meeting page's (rcp.scheduling.quorum_statement).
                         "statement": quorum_statement(quorum, basis="present"),
                         "specialties": list(quorum.specialties), "missing": list(quorum.missing),
                         "short_by": quorum.short_by,
                         # What the UI shows: "missing: radiation oncologist", in the reader's language.
                         "missing_labels": [i18n.gettext(specialty_of(k).label) if k in _KEYS else k
                                            for k in quorum.missing]}
        out["attendees"] = [a.as_json() for a in fiche.attendees]
        # Flagged before signature (a signature refuses them: rcp.minutes.versions.TreatmentNotCovered).
        out["treatment_gaps"] = [
            {"code": g.code, "system": g.system, "display": fiche.treatment_display(g), "needs": list(g.needs),
             "needs_labels": [i18n.gettext(specialty_of(k).label) if k in _KEYS else k for k in g.needs]}
            for g in fiche.treatment_gaps()
        ]
        try:
            fiche.check_complete()
        except Invalid as exc:
            # Listed in the room under "Still missing", in the reader's language (the messages are N_-marked).
            out["missing"] = {name: i18n.gettext(message) for name, message in exc.fields.items()}
    if user is not None:
        out["signing"] = await _may_sign(session, user, fiche, context.invited_ids)
    for v in versions:
        out["writebacks"].extend(_job_json(j) for j in await store.writebacks_for(session, v.id))
    return out


async def decision(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    async with request.app.state.db.session() as s:
        case = await access.read_case(s, user, case_id, what="decision of case {case}", request=request)
    present = await _under_way(request, case)
    async with request.app.state.db.session() as s:
        state = await _state(s, case_id, await _attendees(s, case_id, present), user=user)
    return JSONResponse(state)


async def save_field(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    name = request.path_params["name"]
    edit = await read_json(request, FieldEdit)
    async with request.app.state.db.session() as s:
        case, _meeting = await access.require_case(s, user, case_id, Action.write_decision)
        try:
            saved = await store.save_field(s, case_id, name, edit.value, base_version=edit.base_version,
                                           editor_id=user.id)
        except Invalid as exc:
            # Shown under the field in the room, in the reader's language (the rules' messages are N_-marked).
            raise Invalid(exc.message, fields={k: i18n.gettext(v) for k, v in exc.fields.items()}) from None
        except FieldConflict as exc:
            # The current text goes back to the editor so both versions can be compared (no silent loss).
            return JSONResponse({**exc.as_json(), "field": name, "current": exc.current.as_json()},
                                status_code=exc.status)
        await audit.record(s, event="patient_record", action="U", request=request, patient_id=case.patient_id,
                           meeting_id=case.meeting_id, what=f"decision of case {case_id}: field {name}")
        revision = (await store.load_draft(s, case_id)).revision
    for hook in _field_hooks(request):
        try:
            await hook(case.meeting_id, case_id, name, saved)
        except Exception:
            log.exception("case %s: live update of field %s failed", case_id, name)
    return JSONResponse({"field": name, **saved.as_json(), "revision": revision})


#: Writes a signed version in the given transaction, calling ``confirm`` (the re-authentication) last.
_Write = Callable[[AsyncSession, store.Confirm], Awaitable[store.StoredVersion]]


async def _signing(request: Request, user: Any, case: Case, *, act: str, password: str, code: str,
                   write: _Write) -> Response:
    """The one path of a signature and of an amendment: the caller's own sign-in, then the store's rules (signer,
    staleness, completeness, quorum), then the password, last, so that a refusal after a right password never
    happens; a throttled attempt is a 429 with Retry-After, a refusal by the rules is audited."""

    async def confirm() -> None:
        await reauthenticate(request, user, password, code=code, act=f"{act} of case {case.id}",
                             patient_id=case.patient_id, meeting_id=case.meeting_id)

    try:
        _own_sign_in(user)
        async with request.app.state.db.session() as s:
            stored = await write(s, confirm)
            await audit.record(s, event="patient_record", action="C", request=request, patient_id=case.patient_id,
                               meeting_id=case.meeting_id,
                               what=f"decision of case {case.id}: {act}, version {stored.version.number}")
    except Throttled as exc:
        return JSONResponse(exc.as_json(), status_code=exc.status, headers={"Retry-After": str(exc.retry_after_s)})
    except NotAllowedToSign as exc:
        await _refused(request, case, act, exc)
        raise
    _wake(request)
    await _announce_signed(request, case, stored, user.id)
    return JSONResponse(_version_json(stored), status_code=201)


async def sign(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    body = await read_json(request, SignRequest)
    async with request.app.state.db.session() as s:
        case, _meeting = await access.require_case(s, user, case_id, Action.sign)
    present = await _under_way(request, case)

    async def write(s: AsyncSession, confirm: store.Confirm) -> store.StoredVersion:
        return await store.sign(s, case_id=case_id, signer_id=user.id, seen_revision=body.seen_revision,
                                attendees=await _attendees(s, case_id, present), hooks=_signed_hooks(request),
                                confirm=confirm)

    return await _signing(request, user, case, act="signature", password=body.password, code=body.code,
                          write=write)


async def amend(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    body = await read_json(request, AmendRequest)
    async with request.app.state.db.session() as s:
        case, _meeting = await access.require_case(s, user, case_id, Action.sign)

    async def write(s: AsyncSession, confirm: store.Confirm) -> store.StoredVersion:
        return await store.amend(s, case_id=case_id, signer_id=user.id, reason=body.reason,
                                 replaces_number=body.replaces, changes=body.changes, hooks=_signed_hooks(request),
                                 confirm=confirm)

    return await _signing(request, user, case, act="amendment", password=body.password, code=body.code,
                          write=write)


def _field_hooks(request: Request) -> list[store.FieldHook]:
    """After a draft field commits: the module-wide hooks, then this app's (its room broadcaster), per app so that
    two apps in one process (tests) do not broadcast into each other's rooms."""
    return [*store.on_field_saved, *getattr(request.app.state, "on_field_saved", ())]


async def _under_way(request: Request, case: Case) -> frozenset[int] | None:
    """Through the app's room (``app.state.room_attendees``, rcp.room.decisions): record any ended discussion of
    the meeting still missing from the case records, then who is connected to a discussion of ``case`` still under
    way. None without a room, or when the room never had anybody. Called between the caller's transactions, so
    that the one reading the record sees what this one wrote."""
    lookup = getattr(request.app.state, "room_attendees", None)
    if lookup is None:
        return None
    assert case.id is not None
    present: frozenset[int] | None = await lookup(case.meeting_id, case.id)
    return present


async def _attendees(session: AsyncSession, case_id: int,
                     present: frozenset[int] | None) -> tuple[AttendeeRecord, ...]:
    """The case's attendees: its frozen record, plus those connected to its discussion under way (``present``)."""
    context = await store.load_context(session, case_id)
    return context.attendees(await store.attendees_under_way(session, context, present))


async def _announce_signed(request: Request, case: Case, stored: store.StoredVersion, signer_id: int) -> None:
    """After the signature committed: the app's ``on_decision_signed`` hooks (the room tells every participant).
    A failure here never undoes the signature; pages that missed it see the version on their next read."""
    for hook in getattr(request.app.state, "on_decision_signed", ()):
        try:
            await hook(case.meeting_id, stored.case_id, stored.version.number, signer_id)
        except Exception:
            log.exception("case %s: announcing the signature failed", stored.case_id)


def _signed_hooks(request: Request) -> list[store.SignedHook]:
    """What this app does inside a signature's transaction (its EPR outbox rows), set up by its lifespan."""
    return list(getattr(request.app.state, "on_signed", ()))


def _wake(request: Request) -> None:
    """After a signature commits: nudge the imaging write-back and the EPR delivery workers the app runs."""
    for name in ("minutes_writeback", "epr_worker"):
        worker = getattr(request.app.state, name, None)
        if worker is not None:
            worker.wake()
    mail.wake(request.app.state)  # the GP's and correspondents' copies (rcp.minutes.copies)


async def versions(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    async with request.app.state.db.session() as s:
        await access.read_case(s, user, case_id, what="signed versions of case {case}", request=request)
        listed = await store.list_versions(s, case_id)
    return JSONResponse([_version_json(v, content=True) for v in listed])


async def version_cda(request: Request) -> Response:
    """One signed version as a CI-SIS CANCER-FRCP CDA R2 document (``rcp.minutes.cda``), read as its PDF is read:
    the one policy's view of the case's patient, the read audited; a correction carries the version it replaces
    (relatedDocument RPLC)."""
    user = current_user(request)
    case_id = path_int(request, "case_id")
    number = path_int(request, "number")
    async with request.app.state.db.session() as s:
        await access.read_case(s, user, case_id, what=f"CDA of version {number} of case {{case}}", request=request)
        listed = {v.version.number: v.version for v in await store.list_versions(s, case_id)}
    version = listed.get(number)
    if version is None:
        raise NotFound("No such signed version of this decision.")
    replaced = listed.get(version.replaces) if version.replaces is not None else None
    document = await run_in_threadpool(cda.fiche_cda, version.fiche(), version, replaced=replaced)
    name = f"fiche-rcp-case-{case_id}-v{number}.xml"
    return Response(document, media_type=cda.MEDIA_TYPE,
                    headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"})


async def _fiche_of(request: Request) -> tuple[Fiche, SignedVersion | None]:
    """The requested version (``?version=N``), else the latest signed one, else the current draft."""
    user = current_user(request)
    case_id = path_int(request, "case_id")
    wanted = request.query_params.get("version")
    async with request.app.state.db.session() as s:
        case = await access.read_case(s, user, case_id, what="fiche of case {case}", request=request)
    present = await _under_way(request, case)
    async with request.app.state.db.session() as s:
        listed = await store.list_versions(s, case_id)
        chosen: SignedVersion | None = None
        if wanted:
            if not wanted.isdigit():
                raise Invalid("version must be a number.", fields={"version": "expected a whole number"})
            chosen = next((v.version for v in listed if v.version.number == int(wanted)), None)
            if chosen is None:
                raise NotFound("No such signed version of this decision.")
        elif listed:
            chosen = listed[-1].version
        if chosen is not None:
            fiche = chosen.fiche()
        else:
            fiche = store.build_fiche(await store.load_context(s, case_id), await store.load_draft(s, case_id),
                                      await _attendees(s, case_id, present))
    return fiche, chosen


async def fiche_page(request: Request) -> Response:
    fiche, version = await _fiche_of(request)
    return HTMLResponse(render.fiche_html(fiche, version), headers={"Cache-Control": "no-store"})


async def fiche_pdf(request: Request) -> Response:
    fiche, version = await _fiche_of(request)
    pdf = await render.fiche_pdf_async(fiche, version)
    name = f"fiche-rcp-case-{fiche.case_id}" + (f"-v{version.number}" if version else "-draft") + ".pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"})


async def _minutes_of(request: Request) -> tuple[str, date, list[render.MinutesItem], list[render.DeferredItem]]:
    """The minutes list the meeting's agenda (rcp.scheduling.agenda): a fiche for each case on it, a line for each
    case deferred to a later meeting (where it is decided), nothing for a withdrawn case."""
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    async with request.app.state.db.session() as s:
        await access.require_meeting(s, user, meeting_id, Action.view_patient)  # before reading the agenda
        signed = set(await store.meeting_versions(s, meeting_id))
        drafts = [e.case for e in (await meeting_agenda(s, meeting_id)).in_minutes
                  if e.state != "deferred" and e.case.id not in signed]
    # A draft's attendees as its fiche page shows them: the record, and the discussion under way (between sessions).
    present = {case.id: await _under_way(request, case) for case in drafts}
    async with request.app.state.db.session() as s:
        listed = (await meeting_agenda(s, meeting_id)).in_minutes
        # Every case of the minutes is a read of its patient's record, each named in the audit trail.
        meeting, _read = await access.read_meeting_cases(s, user, meeting_id, request=request,
                                                         cases=[e.case for e in listed],
                                                         what=f"minutes of meeting {meeting_id}, case {{case}}")
        board = await s.get(Board, meeting.board_id)
        zone = board.timezone if board is not None else "Europe/Paris"
        latest = await store.meeting_versions(s, meeting_id)
        items = []
        deferred = []
        for entry in listed:
            case = entry.case
            assert case.id is not None
            if entry.state == "deferred":
                patient = await s.get(Patient, case.patient_id)
                assert patient is not None
                deferred.append(render.DeferredItem(
                    family_name=patient.family_name, given_names=patient.given_names,
                    deferred_to=(as_utc(entry.deferred_to.starts_at).astimezone(ZoneInfo(zone)).date()
                                 if entry.deferred_to else None)))
                continue
            stored = latest.get(case.id)
            if stored is not None:
                items.append(render.MinutesItem(stored.version.fiche(), stored.version))
                continue
            try:
                context = await store.load_context(s, case.id)
                attendees = context.attendees(await store.attendees_under_way(s, context, present.get(case.id)))
                fiche = store.build_fiche(context, await store.load_draft(s, case.id), attendees)
            except Invalid:
                continue  # a case that cannot become a fiche yet (e.g. patient without identifier) is left out
            items.append(render.MinutesItem(fiche))
        title = meeting.title or (board.name if board else "RCP")
        day = items[0].fiche.meeting_date if items else as_utc(meeting.starts_at).date()
    return title, day, items, deferred


async def minutes_page(request: Request) -> Response:
    title, day, items, deferred = await _minutes_of(request)
    return HTMLResponse(render.minutes_html(title, day, items, deferred=deferred),
                        headers={"Cache-Control": "no-store"})


async def minutes_pdf(request: Request) -> Response:
    title, day, items, deferred = await _minutes_of(request)
    pdf = await render.minutes_pdf_async(title, day, items, deferred)
    name = f"minutes-meeting-{path_int(request, 'meeting_id')}.pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"})


routes: list[BaseRoute] = [
    ApiRoute("/api/cases/{case_id:int}/decision", decision, method="GET", tag="minutes",
             summary="The case's decision: draft fields with versions, quorum, gaps, signed versions, write-back",
             media_type="application/json"),
    ApiRoute("/api/cases/{case_id:int}/decision/fields/{name}", save_field, method="PUT", tag="minutes",
             body=FieldEdit, summary="Save one field of the draft (409 with the current value on a conflict)",
             media_type="application/json"),
    ApiRoute("/api/cases/{case_id:int}/decision/sign", sign, method="POST", tag="minutes", body=SignRequest,
             status=201, summary="Sign the decision (a physician present at the discussion, password, quorum)",
             media_type="application/json"),
    ApiRoute("/api/cases/{case_id:int}/decision/amend", amend, method="POST", tag="minutes", body=AmendRequest,
             status=201, summary="Sign a correction (its changed fields and a reason) that replaces the latest version",
             media_type="application/json"),
    ApiRoute("/api/cases/{case_id:int}/decision/versions", versions, method="GET", tag="minutes",
             summary="Every signed version of the decision with its content", media_type="application/json"),
    ApiRoute("/api/cases/{case_id:int}/decision/versions/{number:int}/cda", version_cda, method="GET",
             tag="minutes", summary="One signed version as a CI-SIS CANCER-FRCP CDA R2 document (FRCP 2022.01)",
             media_type=cda.MEDIA_TYPE),
    Route("/cases/{case_id:int}/fiche", fiche_page, methods=["GET"], name="minutes_fiche"),
    Route("/cases/{case_id:int}/fiche.pdf", fiche_pdf, methods=["GET"], name="minutes_fiche_pdf"),
    Route("/meetings/{meeting_id:int}/minutes", minutes_page, methods=["GET"], name="minutes_meeting"),
    Route("/meetings/{meeting_id:int}/minutes.pdf", minutes_pdf, methods=["GET"], name="minutes_meeting_pdf"),
]
