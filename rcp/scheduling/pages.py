"""The coordinator's workspace and the clinicians' read-only view, as server-rendered pages (jinja2).

Every page works without JavaScript: forms post, the server calls ``rcp.scheduling.service`` (the same operations
as the JSON API, one transaction per request) and redirects (POST/redirect/GET). Scripts only make it smoother
(drag-and-drop reordering, live patient search, people by specialty) through the JSON API.

When the service refuses input (``Invalid``, ``Conflict``) or a form does not validate (pydantic), the page is
rendered again with what the user typed and a message next to each field, in the user's language. When api.js
posted the form itself (``X-Requested-With: rcp-form``), the same refusal comes back as JSON
(``{"error", "message", "fields"}``, messages translated) and success as ``{"location"}``, so the script can show
the errors without a reload. Other refusals (403, 404) are the app's error pages, as for any request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp.clock import utcnow
from rcp.db import Database
from rcp.errors import Conflict, Invalid, NotFound, RcpError
from rcp.http import current_user, path_int, revoke
from rcp.i18n import N_, current_locale
from rcp.i18n import gettext as _
from rcp.identifiers import IDENTIFIER_MESSAGES, INS_NIA_OID, INS_NIR_OID, ins_system
from rcp.mail import wake
from rcp.scheduling import access, agenda, charter, registration, schemas, service
from rcp.scheduling.access import Action, case_for_user, manages_board, meeting_for_user
from rcp.scheduling.models import Board, Establishment, Invitation, Meeting, Patient
from rcp.scheduling.specialties import SPECIALTIES
from rcp.templating import WEB_DIR, render

__all__ = ["field_errors", "routes", "service_errors"]



#: Labels the lead's modules define in English and the templates translate at display time (specialty filter,
#: service messages shown on pages). Listed here so that ``pybabel extract`` puts them in the catalog.
CATALOG_ONLY: tuple[str, ...] = (
    N_("Surgeon"), N_("Medical oncologist"), N_("Radiation oncologist"), N_("Radiologist"), N_("Pathologist"),
    N_("Pulmonologist"), N_("Gastroenterologist"), N_("Nuclear medicine physician"), N_("Organ specialist"),
    N_("Palliative care physician"), N_("Geriatric oncologist"), N_("General practitioner"),
    N_("Nurse coordinator"), N_("Board secretary"),
    N_("This person is already invited to the meeting."),
    N_("Only the board's coordinators can change this meeting."),
    N_("This case was already discussed; write a new case for a new question."),
    N_("This case was already discussed and cannot be withdrawn."),
    N_("This meeting is closed; its details can no longer change."),
    N_("A patient with one of these identifiers was registered at the same moment."),
    N_("The new order names a case twice."),
    N_("Only coordinators register patients."),
    N_("Unknown user name or wrong password."),
)

#: The imaging panel of the case page, included when the imaging package provides it (context: case, meeting,
#: board, manage, editable, csrf_token).
STUDIES_PANEL = "imaging/case_studies.html"

#: Notices shown after a redirect (``?done=key``): a fixed set, so no user text travels in URLs.
NOTICES: dict[str, str] = {
    "meeting_created": N_("Meeting scheduled."),
    "case_added": N_("Case added to the agenda."),
    "case_saved": N_("Case saved."),
    "case_deferred": N_("Case deferred to the board's next meeting."),
    "case_withdrawn": N_("Case withdrawn from the agenda."),
    "agenda_moved": N_("Agenda order saved."),
    "invited": N_("Invitation sent."),
    "guest_invited": N_("Guest invited: their personal link is being mailed to them."),
    "link_sent": N_("A new link is being mailed to the guest; the previous one no longer works."),
    "uninvited": N_("Invitation removed."),
    "answered": N_("Your answer has been recorded."),
    "status_changed": N_("Meeting status changed."),
    "charter_saved": N_("Board charter saved: the next signatures follow it."),
}

#: Field messages the service uses, in the user's language.
_SERVICE_FIELD_MESSAGES: dict[str, str] = {
    "unknown board": N_("Choose one of your boards."),
    "unknown patient": N_("Choose a patient from the search results."),
    "give patient_id or patient": N_("Choose an existing patient or describe a new one."),
    "already registered": N_("A patient with this identifier is already registered: search for them instead."),
    "duplicate": N_("The same identifier is given twice."),
    "already invited": N_("Already invited."),
    "has an account": N_("This address belongs to an account: invite the person by name, they sign in."),
    "not a guest": N_("Only guests get a link: this person signs in with their account."),
    "missing": N_("Required."),
    "deactivated": N_("This guest was deactivated by an administrator."),
    "unknown user": N_("Choose a person."),
    "not allowed": N_("Not possible in the meeting's current state."),
}


# --- form errors -----------------------------------------------------------------------------------------------


def _pydantic_message(item: Mapping[str, Any]) -> str:
    kind = str(item.get("type", ""))
    ctx = item.get("ctx") or {}
    if kind == "missing":
        return _("Required.")
    if kind == "string_too_short":
        return _("Required.")
    if kind == "string_too_long":
        return _("Too long: at most %(limit)s characters.") % {"limit": ctx.get("max_length", "?")}
    if kind.startswith("date"):
        return _("Enter a valid date.")
    if kind.startswith(("datetime", "time")):
        return _("Enter a valid date and time.")
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return _("Enter a whole number.")
    if kind in {"greater_than_equal", "greater_than"}:
        return _("Must be at least %(limit)s.") % {"limit": ctx.get("ge", ctx.get("gt", "?"))}
    if kind in {"less_than_equal", "less_than"}:
        return _("Must be at most %(limit)s.") % {"limit": ctx.get("le", ctx.get("lt", "?"))}
    if kind == "literal_error":
        return _("Choose one of the options.")
    if kind == "string_pattern_mismatch":
        return _("Wrong format.")
    error = ctx.get("error")
    if kind == "value_error" and str(error) in IDENTIFIER_MESSAGES:  # rcp.identifiers: a catalog sentence
        return _(str(error))
    if kind == "value_error" and "INS" in str(item.get("msg", "")):
        return _("An INS (NIR) has 15 characters; the last two are the control key.")
    return _("Check this field.")


def field_errors(error: ValidationError, rename: Callable[[tuple[Any, ...]], str] | None = None) -> dict[str, str]:
    """Pydantic's errors as ``{form field: translated message}``; input values are never echoed."""
    fields: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        loc = tuple(item["loc"])
        name = rename(loc) if rename else ".".join(str(part) for part in loc)
        fields.setdefault(name or "form", _pydantic_message(item))
    return fields


def service_errors(error: RcpError, rename: Callable[[str], str] | None = None) -> dict[str, str]:
    """The service's ``err.fields`` renamed to form fields, with messages in the user's language."""
    fields: dict[str, str] = {}
    for name, message in error.fields.items():
        key = rename(name) if rename else name
        if message in _SERVICE_FIELD_MESSAGES:
            text = _(_SERVICE_FIELD_MESSAGES[message])
        elif message.startswith("meeting is "):
            text = _("This meeting is no longer open: its agenda cannot change.")
        elif message.startswith(("unknown case ids", "missing case ids")):
            text = _("The agenda changed meanwhile: reload the page.")
        else:
            text = _(message)
        fields.setdefault(key, text)
    return fields


def banner(error: RcpError) -> str:
    """One sentence above the form: what went wrong and what to do."""
    if isinstance(error, Invalid):
        return _("Some fields need your attention: see the messages next to them.")
    if error.fields and any(m.startswith("meeting is ") for m in error.fields.values()):
        return _("This meeting is no longer open: its agenda cannot change. Add the case to the board's next "
                 "meeting instead.")
    return _(error.message)


# --- helpers ---------------------------------------------------------------------------------------------------


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _text(form: FormData, name: str, limit: int = 20_000) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _notice(request: Request) -> str:
    key = request.query_params.get("done", "")
    return _(NOTICES[key]) if key in NOTICES else ""


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


#: Header api.js sets when it submits a page form with fetch: answers are then JSON (errors with translated
#: field messages to show next to the inputs, or where to go next) instead of a page.
SCRIPTED_FORM = "rcp-form"
_ERROR_CODES = {409: "conflict", 422: "invalid"}


def scripted(request: Request) -> bool:
    return request.headers.get("x-requested-with") == SCRIPTED_FORM


def _done(request: Request, url: str) -> Response:
    """After a successful form post: 303 to ``url`` (POST/redirect/GET), or ``{"location"}`` for api.js."""
    return JSONResponse({"location": url}) if scripted(request) else _see(url)


def _refused_json(message: str, fields: Mapping[str, str], status: int) -> JSONResponse:
    return JSONResponse({"error": _ERROR_CODES.get(status, "bad_request"), "message": message,
                         "fields": dict(fields)}, status_code=status)


def _is_coordinator(user: Any) -> bool:
    return str(getattr(user, "role", "")) in {"coordinator", "admin"}


async def managed_boards(session: AsyncSession, user: Any) -> list[Board]:
    """Boards whose meetings ``user`` may schedule (page-specific: the new-meeting form's choices)."""
    if not _is_coordinator(user):
        return []
    return [b for b in await service.list_boards(session, user) if await manages_board(session, user, b.id)]  # type: ignore[arg-type]


async def own_answers(session: AsyncSession, user: Any) -> dict[int, str]:
    """The user's own answer per meeting they are invited to (page-specific: the meetings list column)."""
    rows = await session.exec(select(Invitation.meeting_id, Invitation.response).where(Invitation.user_id == user.id))
    return {meeting_id: response for meeting_id, response in rows.all()}


def _grouped(rows: Sequence[tuple[Any, Board, int]]) -> list[tuple[Board, list[tuple[Any, int]]]]:
    """Meetings per board, boards in name order, each board's meetings in the order the service gave."""
    groups: dict[int, tuple[Board, list[tuple[Any, int]]]] = {}
    for meeting, board, count in rows:
        groups.setdefault(board.id, (board, []))[1].append((meeting, count))  # type: ignore[arg-type]
    return sorted(groups.values(), key=lambda g: g[0].name)


def _next_slot(board: Board) -> datetime:
    return agenda.next_slot(weekday=board.default_weekday, at=board.default_time, timezone=board.timezone,
                            after=utcnow())


# --- meetings list and new meeting ----------------------------------------------------------------------------


async def home(request: Request) -> Response:
    return _see("/meetings")


async def meetings(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        upcoming = await service.list_meetings(s, user, when="upcoming")
        past = await service.list_meetings(s, user, when="past")
        can_schedule = bool(await managed_boards(s, user))
        answers = await own_answers(s, user)
    return render(request, "meetings.html", {
        "upcoming": _grouped(upcoming), "past": _grouped(past), "can_schedule": can_schedule, "answers": answers,
        "notice": _notice(request),
    })


def _board_defaults(board: Board) -> dict[str, Any]:
    slot = _next_slot(board).astimezone(ZoneInfo(board.timezone))
    return {"date": slot.date().isoformat(), "time": slot.strftime("%H:%M"), "duration": board.default_duration_min}


async def _meeting_form(request: Request, s: AsyncSession, user: Any, form: dict[str, Any],
                        errors: dict[str, str], message: str = "", status: int = 200) -> Response:
    if status >= 400 and scripted(request):
        return _refused_json(message, errors, status)
    boards = await managed_boards(s, user)
    if not boards:
        raise NotFound(_("You do not coordinate any board: ask an administrator to add you to one."))
    defaults = {b.id: _board_defaults(b) for b in boards}
    return render(request, "meeting_new.html", {
        "page_path": "/meetings/new",
        "boards": boards, "defaults": defaults, "form": form, "errors": errors, "message": message,
    }, status=status)


async def meeting_new(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        boards = await managed_boards(s, user)
        wanted = request.query_params.get("board_id", "")
        board = next((b for b in boards if str(b.id) == wanted), boards[0] if boards else None)
        form: dict[str, Any] = {"board_id": str(board.id) if board else "", "title": ""}
        if board is not None:
            d = _board_defaults(board)
            form.update(date=d["date"], time=d["time"], duration_min=str(d["duration"]))
        return await _meeting_form(request, s, user, form, {})


def _meeting_rename(loc: tuple[Any, ...]) -> str:
    return {"starts_at": "date"}.get(str(loc[0]), str(loc[0])) if loc else "form"


async def meeting_create(request: Request) -> Response:
    user = current_user(request)
    raw = await request.form()
    form = {name: _text(raw, name, 300) for name in ("board_id", "date", "time", "duration_min", "title")}
    errors: dict[str, str] = {}
    starts_at: datetime | None = None
    try:
        day = date.fromisoformat(form["date"])
    except ValueError:
        errors["date"] = _("Enter a valid date.") if form["date"] else _("Required.")
        day = None
    try:
        at = time.fromisoformat(form["time"])
    except ValueError:
        errors["time"] = _("Enter a valid time (HH:MM).") if form["time"] else _("Required.")
        at = None
    if day is not None and at is not None:
        starts_at = datetime.combine(day, at)  # wall clock in the board's zone; the service converts to UTC
    data: schemas.MeetingIn | None = None
    try:
        data = schemas.MeetingIn.model_validate({
            "board_id": form["board_id"] or None, "starts_at": starts_at or "",
            "duration_min": form["duration_min"] or None, "title": form["title"],
        })
    except ValidationError as exc:
        found = field_errors(exc, _meeting_rename)
        if "board_id" in found:
            found["board_id"] = _("Choose one of your boards.")
        if starts_at is None:
            found.pop("date", None)
        if not form["duration_min"]:
            found["duration_min"] = _("Required.")
        errors = {**found, **errors}
    async with _db(request).session() as s:
        if errors or data is None:
            return await _meeting_form(request, s, user, form, errors, banner(Invalid("")), 422)
        try:
            meeting = await service.create_meeting(s, user, data)
        except (Invalid, Conflict) as exc:
            await s.rollback()
            return await _meeting_form(request, s, user, form, service_errors(exc), banner(exc), exc.status)
    return _done(request, f"/meetings/{meeting.id}?done=meeting_created")


# --- board charter --------------------------------------------------------------------------------------------


#: The registration fields of the charter form (``rcp.scheduling.registration``): the board's own, then its
#: establishment's (form name -> EstablishmentIn field).
_ESTABLISHMENT_FIELDS = {
    "finess": "finess", "establishment_name": "name", "facility_type": "facility_type",
    "regional_network_id": "regional_network_id", "regional_network_name": "regional_network_name",
    "coordination_centre_id": "coordination_centre_id", "coordination_centre_name": "coordination_centre_name",
    "custodian_finess": "custodian_finess", "custodian_name": "custodian_name",
}
_FORM_FIELD = {v: k for k, v in _ESTABLISHMENT_FIELDS.items()}


def _charter_form(board: Board, place: Establishment | None) -> dict[str, Any]:
    form: dict[str, Any] = {
        "type_code": board.type_code, "required_specialties": list(board.required_specialties),
        "minimum_specialties": str(board.minimum_specialties), "national_id": board.national_id,
        "referral": board.referral, "paediatric": board.paediatric}
    for name, attribute in _ESTABLISHMENT_FIELDS.items():
        form[name] = getattr(place, attribute) if place is not None else ""
    if place is None:
        form["facility_type"] = "SA01"
    return form


#: What the charter form says for a field the pydantic model refused (it names the field, never the input).
_CHARTER_MESSAGES = {
    "type_code": N_("Choose a type of board from the list."),
    "required_specialties": N_("Choose physician specialties from the list."),
    "facility_type": N_("Choose a type of establishment from the list."),
    "custodian_name": N_("Give both the FINESS number and the name of the organisation that keeps the documents, "
                         "or neither when the establishment keeps them."),
    "establishment_name": N_("Required: the establishment's name, as FINESS registers it."),
}


def _charter_field(loc: tuple[Any, ...]) -> str:
    """A pydantic location of BoardCharterPatch as the form's field name."""
    if not loc:
        return "form"
    if loc[0] == "establishment":  # the one rule on the whole establishment is the custodian's (both or neither)
        return _FORM_FIELD.get(str(loc[1]), "custodian_name") if len(loc) > 1 else "custodian_name"
    return str(loc[0])


async def _charter_page(request: Request, s: AsyncSession, user: Any, board_id: int, *,
                        form: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                        message: str = "", status: int = 200) -> Response:
    if status >= 400 and scripted(request):
        return _refused_json(message, errors or {}, status)
    board = await access.require_board(s, user, board_id, Action.edit_charter)
    places = await service.establishments_of(s, [board])
    physicians = [(sp.key, _(sp.label)) for sp in SPECIALTIES if sp.physician]
    return render(request, "scheduling/charter.html", {
        "page_path": f"/boards/{board_id}/charter", "board": service.board_out(board, places),
        "organ_types": [t for t in charter.BOARD_TYPES if t.nature == "organ"],
        "transversal_types": [t for t in charter.BOARD_TYPES if t.nature == "transversal"],
        "facility_types": registration.FACILITY_TYPES,
        "physicians": physicians, "errors": errors or {},
        "form": form or _charter_form(board, places.get(board.establishment_id or 0)),
        "message": message, "notice": _notice(request),
    }, status=status)


async def charter_page(request: Request) -> Response:
    """The board's charter (its coordinators): FRCP type, required specialties, minimum (rcp.scheduling.charter),
    and its registration: establishment, 3C, regional network, national RCP id (rcp.scheduling.registration)."""
    user = current_user(request)
    async with _db(request).session() as s:
        return await _charter_page(request, s, user, path_int(request, "board_id"))


async def charter_save(request: Request) -> Response:
    user = current_user(request)
    board_id = path_int(request, "board_id")
    raw = await request.form()
    form: dict[str, Any] = {"type_code": _text(raw, "type_code", 20),
                            "required_specialties": [v for v in raw.getlist("required_specialties")
                                                     if isinstance(v, str)][:20],
                            "minimum_specialties": _text(raw, "minimum_specialties", 5),
                            "national_id": _text(raw, "national_id", 40),
                            "referral": raw.get("referral") == "on", "paediatric": raw.get("paediatric") == "on"}
    for name in _ESTABLISHMENT_FIELDS:
        form[name] = _text(raw, name, 200)
    # No FINESS and nothing else typed about the establishment: the board stays without one (or leaves it).
    establishment = None
    if any(form[name] for name in _ESTABLISHMENT_FIELDS if name != "facility_type"):
        establishment = {attribute: form[name] for name, attribute in _ESTABLISHMENT_FIELDS.items()}
    async with _db(request).session() as s:
        await access.require_board(s, user, board_id, Action.edit_charter)  # before judging the form
        try:
            data = schemas.BoardCharterPatch.model_validate({
                "type_code": form["type_code"], "required_specialties": form["required_specialties"],
                "minimum_specialties": form["minimum_specialties"] or None, "national_id": form["national_id"],
                "referral": form["referral"], "paediatric": form["paediatric"], "establishment": establishment})
        except ValidationError as exc:
            errors = field_errors(exc, _charter_field)
            errors = {k: _(_CHARTER_MESSAGES[k]) if k in _CHARTER_MESSAGES else v for k, v in errors.items()}
            if not form["minimum_specialties"]:
                errors["minimum_specialties"] = _("Required.")
            return await _charter_page(request, s, user, board_id, form=form, errors=errors,
                                       message=banner(Invalid("")), status=422)
        await service.update_charter(s, user, board_id, data, request=request)
    return _done(request, f"/boards/{board_id}/charter?done=charter_saved")


# --- meeting page ---------------------------------------------------------------------------------------------


def _empty_case_form(user: Any) -> dict[str, str]:
    return {"patient_mode": "new", "patient_id": "", "family_name": "", "used_name": "", "given_names": "",
            "first_given_name": "", "birth_date": "", "sex": "unknown", "birth_place_code": "",
            "identity_status": "provisional", "identity_document": "", "identity_attributes": "",
            "ins": "", "ins_kind": "nir", "ipp": "", "ipp_assigner": str(getattr(user, "hospital", "")),
            "ipp_assigner_oid": "", "duplicates_checked": "",
            "referring_physician": "", "question": "", "clinical_summary": "", "staging": "",
            "performance_status": ""}


async def _meeting_page(request: Request, s: AsyncSession, user: Any, meeting_id: int, *,
                        case_form: dict[str, str] | None = None, case_errors: dict[str, str] | None = None,
                        duplicates: Sequence[schemas.PatientOut] = (), search: schemas.PatientSearchIn | None = None,
                        invite_form: dict[str, str] | None = None, invite_errors: dict[str, str] | None = None,
                        guest_form: dict[str, str] | None = None, guest_errors: dict[str, str] | None = None,
                        message: str = "", status: int = 200) -> Response:
    if status >= 400 and scripted(request):
        return _refused_json(message, {**(case_errors or {}), **(invite_errors or {}), **(guest_errors or {})},
                             status)
    detail = await service.meeting_detail(s, user, meeting_id, request=request)
    manage = await manages_board(s, user, detail.board_id)
    edits_charter = await access.allows_board(s, user, Action.edit_charter, detail.board_id)
    board = await s.get(Board, detail.board_id)
    assert board is not None
    is_open = detail.status in {"scheduled", "live"}
    people: list[Any] = []
    found_patients: list[schemas.PatientOut] = []
    # The patient search comes as a form POST (patient_search): never from the address (logs, history, proxies).
    search = search or schemas.PatientSearchIn()
    query, identifier, assigner = search.q, search.identifier, search.assigner
    if manage and is_open and access.role_of(user) in access.ROLE_RULES[Action.list_people]:
        invited = {i.user_id for i in detail.invitations}
        people = [p for p in await service.users_for_invitation(s, user) if p.id not in invited]
        if query or identifier:
            patients = await service.find_patients(s, user, query=query, identifier=identifier,
                                                   system=search.system, assigner=assigner, request=request)
            idents = await service.identifiers_of(s, [p.id for p in patients if p.id is not None])
            found_patients = [service.patient_out(p, idents[p.id]) for p in patients if p.id is not None]
    # detail.cases is the meeting's agenda (rcp.scheduling.agenda.meeting_agenda), in order.
    active = [c for c in detail.cases if agenda.is_on_agenda(c.status)]
    off_agenda = [c for c in detail.cases if not agenda.is_on_agenda(c.status)]
    form = case_form or _empty_case_form(user)
    if found_patients and not case_form:
        form["patient_mode"] = "existing"
    return render(request, "meeting.html", {
        "page_path": f"/meetings/{meeting_id}",
        "meeting": detail,
        "ends_at": detail.starts_at + timedelta(minutes=detail.duration_min),
        "board": board,
        "manage": manage,
        "editable": manage and is_open,
        "edits_charter": edits_charter,
        "active_cases": active,
        "off_agenda": off_agenda,
        "people": people,
        "own_invitation": next((i for i in detail.invitations if i.user_id == user.id), None),
        "case_form": form,
        "case_errors": case_errors or {},
        "open_add_case": bool(case_errors) or bool(query or identifier),
        "search": {"q": query, "identifier": identifier, "assigner": assigner, "done": bool(query or identifier)},
        "found_patients": found_patients,
        "duplicates": list(duplicates),
        "invite_form": invite_form or {"specialty": "", "user_id": "", "quorum_member": "1"},
        "invite_errors": invite_errors or {},
        "guest_form": guest_form or {"guest_prefix": "Dr", "guest_given_name": "", "guest_family_name": "",
                                     "guest_email": "", "guest_specialty": "", "guest_hospital": "",
                                     "guest_quorum_member": "1"},
        "guest_errors": guest_errors or {},
        "message": message,
        "notice": _notice(request),
        "deferred_to": request.query_params.get("to", "") if request.query_params.get("to", "").isdigit() else "",
    }, status=status)


async def meeting(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        return await _meeting_page(request, s, user, path_int(request, "meeting_id"))


async def patient_search(request: Request) -> Response:
    """The add-case form's "find a registered patient" without script: a form POST (CSRF token), so that the
    names and identifiers searched for never appear in an address; answers the meeting page with the results."""
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    raw = await request.form()
    fields = {"q": _text(raw, "q", 100), "identifier": _text(raw, "identifier", 64),
              "assigner": _text(raw, "assigner", 100)}
    async with _db(request).session() as s:
        await access.require_meeting(s, user, meeting_id, Action.edit_agenda)  # before judging the form
        try:
            search = schemas.PatientSearchIn.model_validate(fields)
        except ValidationError as exc:
            return await _meeting_page(request, s, user, meeting_id,
                                       case_errors=field_errors(exc, lambda loc: str(loc[0]) if loc else "q"),
                                       message=banner(Invalid("")), status=422)
        return await _meeting_page(request, s, user, meeting_id, search=search)


#: Buttons on the meeting header and the status each asks for.
_STATUS_ACTIONS = {"start": "live", "close": "closed", "cancel": "cancelled", "reopen": "scheduled"}


async def meeting_status(request: Request) -> Response:
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    form = await request.form()
    target = _STATUS_ACTIONS.get(_text(form, "action", 20))
    async with _db(request).session() as s:
        await access.require_meeting(s, user, meeting_id, Action.manage_meeting)  # before judging the form
        try:
            if target is None:
                raise Invalid("Unknown action.", fields={"action": "not allowed"})
            await service.update_meeting(s, user, meeting_id, schemas.MeetingPatch(status=target))  # type: ignore[arg-type]
        except (Invalid, Conflict) as exc:
            await s.rollback()
            return await _meeting_page(request, s, user, meeting_id, message=banner(exc), status=exc.status)
    await revoke(request, meeting_id=meeting_id)
    return _done(request, f"/meetings/{meeting_id}?done=status_changed")


# --- cases ----------------------------------------------------------------------------------------------------

_CASE_FIELDS = ("referring_physician", "question", "clinical_summary", "staging", "performance_status")
#: The identity traits of the national rules (RNIV) the add-case form asks for a new patient.
_PATIENT_FIELDS = ("family_name", "used_name", "given_names", "first_given_name", "birth_date", "sex",
                   "birth_place_code", "identity_status", "identity_document")
#: The INS kinds the form offers (the test OIDs .10/.11 only through the API, never typed by hand).
_INS_KIND_OIDS = {"nir": INS_NIR_OID, "nia": INS_NIA_OID}


def case_input(form: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The add-case form as ``CaseIn`` data, and the form field behind each patient identifier (by index)."""
    data: dict[str, Any] = {name: form.get(name, "") for name in _CASE_FIELDS}
    data["performance_status"] = form.get("performance_status") or None
    identifier_fields: list[str] = []
    if form.get("patient_mode") == "existing":
        data["patient_id"] = form.get("patient_id") or None
    else:
        identifiers: list[dict[str, str]] = []
        if form.get("ins"):
            oid = _INS_KIND_OIDS.get(form.get("ins_kind", ""), INS_NIR_OID)
            identifiers.append({"system": ins_system(oid), "value": form["ins"].replace(" ", ""),
                                "assigner_oid": oid})
            identifier_fields.append("ins")
        if form.get("ipp"):
            identifiers.append({"system": "IPP", "value": form["ipp"], "assigner": form.get("ipp_assigner", ""),
                                "assigner_oid": form.get("ipp_assigner_oid", "")})
            identifier_fields.append("ipp")
        data["patient"] = {
            "family_name": form.get("family_name", ""), "used_name": form.get("used_name", ""),
            "given_names": form.get("given_names", ""), "first_given_name": form.get("first_given_name", ""),
            "birth_date": form.get("birth_date") or None, "sex": form.get("sex") or "unknown",
            "birth_place_code": form.get("birth_place_code", "").upper(),
            "identity_status": form.get("identity_status") or "provisional",
            "identity_document": form.get("identity_document", ""),
            "identity_attributes": form.get("identity_attributes", "").split(),
            "identifiers": identifiers,
        }
    return data, identifier_fields


def _case_renamer(identifier_fields: Sequence[str]) -> Callable[[tuple[Any, ...]], str]:
    def rename(loc: tuple[Any, ...]) -> str:
        parts = [str(p) for p in loc]
        if parts and parts[0] == "patient":
            parts = parts[1:]
        if not parts:
            return "family_name"
        if parts[0] == "identifiers" and len(parts) > 1 and parts[1].isdigit():
            index = int(parts[1])
            field = identifier_fields[index] if index < len(identifier_fields) else "ins"
            return "ipp_assigner_oid" if field == "ipp" and parts[-1] == "assigner_oid" else field
        return parts[0]

    return rename


#: The identity rules ``schemas.PatientIn`` checks as a whole (its messages start with the field they concern),
#: as form fields and messages in the user's language.
_IDENTITY_RULES: dict[str, tuple[str, str]] = {
    "identity_document": ("identity_document", N_("A validated identity names the identity document that was "
                                                  "checked.")),
    "identity_status": ("identity_status", N_("A doubtful or fictitious identity stays provisional.")),
    "identity_attributes": ("identity_attributes", N_("An identity is not both doubtful and fictitious.")),
    "first_given_name": ("first_given_name", N_("The first given name must be one of the given names.")),
    "sex": ("sex", N_("The INS is that of a patient of the other sex (its first digit).")),
    "birth_date": ("birth_date", N_("The INS encodes another year or month of birth.")),
    "identifiers": ("ins", N_("An INS (NIR) has 15 characters; the last two are the control key.")),
}


def case_errors(error: ValidationError, identifier_fields: Sequence[str]) -> dict[str, str]:
    """The add-case form's errors: per field, with the identity rules' whole-patient checks on their field."""
    rename = _case_renamer(identifier_fields)
    fields: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        loc = tuple(item["loc"])
        rule = str(item.get("msg", "")).removeprefix("Value error, ").split(":", 1)[0]
        if item.get("type") == "value_error" and loc in {(), ("patient",)} and rule in _IDENTITY_RULES:
            name, message = _IDENTITY_RULES[rule]
            fields.setdefault(name, _(message))
        else:
            fields.setdefault(rename(loc) or "form", _pydantic_message(item))
    return fields


async def case_add(request: Request) -> Response:
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    raw = await request.form()
    names = ("patient_mode", "patient_id", "ins", "ins_kind", "ipp", "ipp_assigner", "ipp_assigner_oid",
             "duplicates_checked", *_PATIENT_FIELDS, *_CASE_FIELDS)
    form = {name: _text(raw, name) for name in names}
    form["identity_attributes"] = " ".join(sorted({str(v) for v in raw.getlist("identity_attributes")}))[:100]
    use_patient = _text(raw, "use_patient", 20)
    data, identifier_fields = case_input(form)
    rename = _case_renamer(identifier_fields)
    async with _db(request).session() as s:
        try:
            await access.require_meeting(s, user, meeting_id, Action.edit_agenda)  # before judging the form
            if form["patient_mode"] == "existing" and not form["patient_id"]:
                raise Invalid("No patient chosen.", fields={"patient_id": "unknown patient"})
            try:
                case_in = schemas.CaseIn.model_validate(data)
            except ValidationError as exc:
                return await _meeting_page(request, s, user, meeting_id, case_form=form,
                                           case_errors=case_errors(exc, identifier_fields),
                                           message=banner(Invalid("")), status=422)
            if case_in.patient is not None:
                # RNIV: search before creating (the rule lives in service.search_before_creating). The coordinator
                # takes a registered patient who looks like this one, or says that none of them is this patient.
                if use_patient and not use_patient.isdigit():
                    raise Invalid("Choose a patient.", fields={"patient_id": "unknown patient"})
                case_in = case_in.model_copy(update={"use_patient": int(use_patient) if use_patient else None,
                                                     "duplicates_checked": form["duplicates_checked"] == "1"})
            await service.add_case(s, user, meeting_id, case_in, request=request)
        except service.LikelyDuplicates as held:
            # Nothing written but the audit of the look-alikes shown, which stays.
            found = [p for p in [await s.get(Patient, pid) for pid in held.patient_ids] if p is not None]
            idents = await service.identifiers_of(s, [p.id for p in found if p.id is not None])
            return await _meeting_page(
                request, s, user, meeting_id, case_form=form,
                duplicates=[service.patient_out(p, idents[p.id]) for p in found if p.id is not None],
                case_errors={"duplicates_checked": _(
                    "Patients already registered look like this one: take the right one, or tick "
                    "this box if none of them is this patient.")},
                message=_("This patient may already be registered: check the patients below "
                          "before creating a new record."), status=409)
        except (Invalid, Conflict) as exc:
            await s.rollback()
            errors = service_errors(exc, lambda name: rename(tuple(name.split("."))))
            return await _meeting_page(request, s, user, meeting_id, case_form=form, case_errors=errors,
                                       message=banner(exc), status=exc.status)
    return _done(request, f"/meetings/{meeting_id}?done=case_added#agenda")


async def agenda_move(request: Request) -> Response:
    """The no-script fallback of drag and drop: one case up or down."""
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    form = await request.form()
    case_id = _text(form, "case_id", 20)
    offset = {"up": -1, "down": 1}.get(_text(form, "direction", 10), 0)
    async with _db(request).session() as s:
        try:
            await access.require_meeting(s, user, meeting_id, Action.edit_agenda)  # before judging the form
            if not case_id.isdigit() or offset == 0:
                raise Invalid("Choose a case and a direction.", fields={"case_id": "not allowed"})
            case = await case_for_user(s, user, int(case_id))
            if case.meeting_id != meeting_id:
                raise Invalid("This case is not on this agenda.", fields={"case_id": "not allowed"})
            await service.move_case(s, user, int(case_id), offset)
        except (Invalid, Conflict) as exc:
            await s.rollback()
            return await _meeting_page(request, s, user, meeting_id, message=banner(exc), status=exc.status)
    return _done(request, f"/meetings/{meeting_id}?done=agenda_moved#case-{case_id}")


async def _case_context(request: Request, s: AsyncSession, user: Any, case_id: int) -> dict[str, Any]:
    found = await case_for_user(s, user, case_id)
    out = (await service.cases_out(s, user, [found], request=request))[0]
    meeting_row = await meeting_for_user(s, user, found.meeting_id)
    board = await s.get(Board, meeting_row.board_id)
    assert board is not None and meeting_row.id is not None
    manage = await access.allows(s, user, Action.manage_meeting, meeting_row)
    editable = (await access.allows(s, user, Action.edit_agenda, meeting_row)
                and agenda.is_on_agenda(out.status))
    # RNIV: other registered patients who look like this one, for those who may search patients (a count only).
    record = await s.get(Patient, found.patient_id)
    possible = (await service.possible_duplicates(s, record)
                if record is not None and access.role_of(user) in access.ROLE_RULES[Action.find_patient] else 0)
    withdrawn = await _withdrawals(s, case_id)
    return {"case": out, "meeting": service.meeting_out(meeting_row, board, 0), "board": board,
            "page_path": f"/cases/{case_id}", "identity_changed": await _identity_changed(s, case_id, out),
            "possible_duplicates": possible, "withdrawals": withdrawn,
            "signed_versions": await _signed_versions(s, user, meeting_row, case_id, manage=manage,
                                                      withdrawn={w.number for w in withdrawn}),
            "manage": manage, "editable": editable,
            "studies_template": STUDIES_PANEL if (WEB_DIR / "templates" / STUDIES_PANEL).exists() else ""}


async def _withdrawals(session: AsyncSession, case_id: int) -> list[Any]:
    """The case's signed versions withdrawn as entered in error (who, when, why), shown to whoever sees the case."""
    from rcp.minutes import withdrawals

    return list(await withdrawals.list_withdrawals(session, case_id))


async def _signed_versions(session: AsyncSession, user: Any, meeting: Meeting, case_id: int, *, manage: bool,
                           withdrawn: set[int]) -> list[dict[str, Any]]:
    """The case's signed versions that still stand, each with whether the caller may withdraw it from this page:
    the rules of the withdrawal route (rcp.minutes.withdrawal_routes: their own sign-in, "sign" on the meeting,
    the signer or the board's coordinator), asked here so that the page offers only what the route would do."""
    from rcp.minutes import store, withdrawals
    from rcp.minutes.withdrawal_routes import from_own_sign_in

    listed = [v for v in await store.list_versions(session, case_id) if v.version.number not in withdrawn]
    may_act = bool(listed) and from_own_sign_in(user) and await access.allows(session, user, Action.sign, meeting)
    return [{"number": v.version.number, "signer": v.version.signer.name if v.version.signer else "",
             "signed_at": v.version.signed_at,
             "withdrawable": may_act and withdrawals.may_withdraw(v, user_id=user.id, may_manage=manage)}
            for v in listed]


async def _identity_changed(session: AsyncSession, case_id: int, case: schemas.CaseOut) -> list[str]:
    """The identity traits that differ between the latest signed fiche and the patient today (the hospital's feed
    or a merge changed them after signature: the decision names the person as they were then; the change itself
    is in the audit trail). Field names only."""
    from rcp.minutes import store

    versions = await store.list_versions(session, case_id)
    if not versions:
        return []
    signed = versions[-1].version.fiche().patient
    now = case.patient
    pairs = {"family_name": (signed.family_name, now.family_name), "given_names": (signed.given_names,
             now.given_names), "birth_date": (signed.birth_date, now.birth_date), "sex": (signed.sex, now.sex)}
    return [name for name, (then, today) in pairs.items() if then != today]


def _case_form(case: schemas.CaseOut) -> dict[str, str]:
    return {"new_item": "",
        "referring_physician": case.referring_physician, "question": case.question,
        "clinical_summary": case.clinical_summary, "staging": case.staging,
        "performance_status": "" if case.performance_status is None else str(case.performance_status),
    }


async def case_page(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        context = await _case_context(request, s, user, path_int(request, "case_id"))
    return render(request, "case.html", {**context, "form": _case_form(context["case"]), "errors": {},
                                         "message": "",
                                         "notice": _notice(request)})


def checklist_input(form: FormData) -> dict[str, bool]:
    """The case page's extra readiness items: each listed item ticked or not, plus a new one (not done yet)."""
    ticked = {str(v) for v in form.getlist("checklist")}
    items = {str(key)[:200]: str(key) in ticked for key in form.getlist("checklist_key") if str(key).strip()}
    new_item = _text(form, "new_item", 200)
    if new_item and new_item not in items:
        items[new_item] = False
    return items


async def case_save(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    raw = await request.form()
    form = {name: _text(raw, name) for name in (*_CASE_FIELDS, "new_item")}
    data: dict[str, Any] = {name: form[name] for name in _CASE_FIELDS}
    data["performance_status"] = form["performance_status"] or None
    if "checklist_form" in raw:
        data["checklist"] = checklist_input(raw)
    async with _db(request).session() as s:
        errors: dict[str, str] = {}
        message = ""
        status = 422
        try:
            patch = schemas.CasePatch.model_validate(data)
            await service.update_case(s, user, case_id, patch, request=request)
        except ValidationError as exc:
            errors = field_errors(exc, lambda loc: "new_item" if loc and loc[0] == "checklist" else str(loc[0]))
            message = banner(Invalid(""))
        except (Invalid, Conflict) as exc:
            await s.rollback()
            errors, message, status = service_errors(exc), banner(exc), exc.status
        if message and scripted(request):
            return _refused_json(message, errors, status)
        if message:
            context = await _case_context(request, s, user, case_id)
            return render(request, "case.html", {**context, "form": form, "errors": errors, "message": message,
                                                 "notice": ""}, status=status)
    return _done(request, f"/cases/{case_id}?done=case_saved")


async def _case_action(request: Request, action: str) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    async with _db(request).session() as s:
        found = await case_for_user(s, user, case_id)
        meeting_id = found.meeting_id
        try:
            if action == "defer":
                moved = await service.defer_case(s, user, case_id, request=request)
                target = f"/meetings/{meeting_id}?done=case_deferred&to={moved.meeting_id}#agenda"
            else:
                await service.withdraw_case(s, user, case_id, request=request)
                target = f"/meetings/{meeting_id}?done=case_withdrawn#agenda"
        except (Invalid, Conflict) as exc:
            await s.rollback()
            return await _meeting_page(request, s, user, meeting_id, message=banner(exc), status=exc.status)
    return _done(request, target)


async def case_defer(request: Request) -> Response:
    return await _case_action(request, "defer")


async def case_withdraw(request: Request) -> Response:
    return await _case_action(request, "withdraw")


# --- invitations ----------------------------------------------------------------------------------------------


async def invitation_add(request: Request) -> Response:
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    raw = await request.form()
    form = {"specialty": _text(raw, "specialty", 40), "user_id": _text(raw, "user_id", 20),
            "quorum_member": "1" if raw.get("quorum_member") else ""}
    async with _db(request).session() as s:
        try:
            await access.require_meeting(s, user, meeting_id, Action.edit_agenda)  # before judging the form
            data = schemas.InvitationIn.model_validate({
                "user_id": form["user_id"] or None, "specialty": form["specialty"],
                "quorum_member": bool(form["quorum_member"]),
            })
            await service.invite(s, user, meeting_id, data, locale=current_locale.get())
        except ValidationError as exc:
            errors = field_errors(exc)
            if "user_id" in errors:
                errors["user_id"] = _("Choose a person.")
            return await _meeting_page(request, s, user, meeting_id, invite_form=form, invite_errors=errors,
                                       message=banner(Invalid("")), status=422)
        except (Invalid, Conflict) as exc:
            await s.rollback()
            return await _meeting_page(request, s, user, meeting_id, invite_form=form,
                                       invite_errors=service_errors(exc), message=banner(exc), status=exc.status)
    wake(request.app.state)
    return _done(request, f"/meetings/{meeting_id}?done=invited#invitations")


async def guest_add(request: Request) -> Response:
    """Invite an external physician without an account: the service mails them a personal link."""
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    raw = await request.form()
    names = {"prefix": 20, "given_name": 100, "family_name": 100, "email": 200, "specialty": 40, "hospital": 200}
    form = {f"guest_{name}": _text(raw, f"guest_{name}", limit) for name, limit in names.items()}
    form["guest_quorum_member"] = "1" if raw.get("guest_quorum_member") else ""
    async with _db(request).session() as s:
        try:
            await access.require_meeting(s, user, meeting_id, Action.edit_agenda)  # before judging the form
            data = schemas.GuestIn.model_validate({**{name: form[f"guest_{name}"] for name in names},
                                                   "quorum_member": bool(form["guest_quorum_member"])})
            await service.invite_guest(s, user, meeting_id, data, locale=current_locale.get())
        except ValidationError as exc:
            errors = {f"guest_{k}": v for k, v in field_errors(exc).items()}
            return await _meeting_page(request, s, user, meeting_id, guest_form=form, guest_errors=errors,
                                       message=banner(Invalid("")), status=422)
        except (Invalid, Conflict) as exc:
            await s.rollback()
            errors = {f"guest_{k}": v for k, v in service_errors(exc).items()}
            return await _meeting_page(request, s, user, meeting_id, guest_form=form, guest_errors=errors,
                                       message=banner(exc), status=exc.status)
    wake(request.app.state)
    return _done(request, f"/meetings/{meeting_id}?done=guest_invited#invitations")


async def invitation_send(request: Request) -> Response:
    """The coordinator's "send a new link" for a guest: the previous link stops working at once."""
    user = current_user(request)
    invitation_id = path_int(request, "invitation_id")
    async with _db(request).session() as s:
        meeting_id = await _invitation_meeting(s, user, invitation_id)
        try:
            await service.resend_link(s, user, invitation_id, locale=current_locale.get())
        except Conflict as exc:
            await s.rollback()
            return await _meeting_page(request, s, user, meeting_id, message=banner(exc), status=exc.status)
    wake(request.app.state)
    return _done(request, f"/meetings/{meeting_id}?done=link_sent#invitations")


async def _invitation_meeting(s: AsyncSession, user: Any, invitation_id: int) -> int:
    inv = await s.get(Invitation, invitation_id)
    if inv is None:
        raise access.NotVisible(_("This invitation no longer exists."),
                                alert=access.Alert(Action.view_meeting, f"invitation {invitation_id}"))
    await meeting_for_user(s, user, inv.meeting_id)
    return inv.meeting_id


async def invitation_remove(request: Request) -> Response:
    user = current_user(request)
    invitation_id = path_int(request, "invitation_id")
    async with _db(request).session() as s:
        meeting_id = await _invitation_meeting(s, user, invitation_id)
        try:
            await service.remove_invitation(s, user, invitation_id)
        except (Invalid, Conflict) as exc:
            await s.rollback()
            return await _meeting_page(request, s, user, meeting_id, message=banner(exc), status=exc.status)
    await revoke(request, meeting_id=meeting_id)
    return _done(request, f"/meetings/{meeting_id}?done=uninvited#invitations")


async def invitation_respond(request: Request) -> Response:
    """An invited clinician answers (accepted, declined, tentative) from the meeting page."""
    user = current_user(request)
    invitation_id = path_int(request, "invitation_id")
    form = await request.form()
    async with _db(request).session() as s:
        meeting_id = await _invitation_meeting(s, user, invitation_id)
        try:
            patch = schemas.InvitationPatch.model_validate({"response": _text(form, "response", 20)})
            await service.update_invitation(s, user, invitation_id, patch)
        except ValidationError:
            return await _meeting_page(request, s, user, meeting_id, message=_("Choose one of the options."),
                                       status=422)
    return _done(request, f"/meetings/{meeting_id}?done=answered#invitations")


routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/meetings", meetings, methods=["GET"], name="meetings"),
    Route("/meetings/new", meeting_new, methods=["GET"], name="meeting_new"),
    Route("/meetings/new", meeting_create, methods=["POST"]),
    Route("/boards/{board_id:int}/charter", charter_page, methods=["GET"], name="board_charter"),
    Route("/boards/{board_id:int}/charter", charter_save, methods=["POST"]),
    Route("/meetings/{meeting_id:int}", meeting, methods=["GET"], name="meeting"),
    Route("/meetings/{meeting_id:int}/status", meeting_status, methods=["POST"], name="meeting_status"),
    Route("/meetings/{meeting_id:int}/cases", case_add, methods=["POST"], name="case_add"),
    Route("/meetings/{meeting_id:int}/patient-search", patient_search, methods=["POST"], name="patient_search"),
    Route("/meetings/{meeting_id:int}/agenda", agenda_move, methods=["POST"], name="agenda_move"),
    Route("/meetings/{meeting_id:int}/invitations", invitation_add, methods=["POST"], name="invitation_add"),
    Route("/meetings/{meeting_id:int}/guests", guest_add, methods=["POST"], name="guest_add"),
    Route("/invitations/{invitation_id:int}/send", invitation_send, methods=["POST"], name="invitation_send"),
    Route("/invitations/{invitation_id:int}/remove", invitation_remove, methods=["POST"], name="invitation_remove"),
    Route("/invitations/{invitation_id:int}/respond", invitation_respond, methods=["POST"],
          name="invitation_respond"),
    Route("/cases/{case_id:int}", case_page, methods=["GET"], name="case"),
    Route("/cases/{case_id:int}", case_save, methods=["POST"]),
    Route("/cases/{case_id:int}/defer", case_defer, methods=["POST"], name="case_defer"),
    Route("/cases/{case_id:int}/withdraw", case_withdraw, methods=["POST"], name="case_withdraw"),
]
