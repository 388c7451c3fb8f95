"""The access policy: may this caller do this to that? One table, asked by every route, page and room command.

The policy is about meetings (a patient is reached through the meetings that discuss them), so it lives with
them; ``rcp.auth`` stays identity and sessions. A caller has a *standing* towards a meeting, from their role and
their session:

- ``admin``: an administrator's account session (not a join link);
- ``coordinator``: a coordinator of the meeting's board (``BoardCoordinator``), through an account session;
- ``service``: a service account (bearer token) attached to the meeting's board, e.g. the interface engine;
- ``participant``: invited to the meeting (``Invitation``), through an account session — clinicians, and the
  coordinators of *other* boards who sit in this one;
- ``guest``: a join-link session (``LoginSession.meeting_scope``), in its one meeting, whatever the account's role;
- ``outsider``: anyone else. An outsider is told *not found* (404), never *forbidden*, so that ids do not reveal
  which meetings, cases and patients exist.

Meeting actions (rows) by standing (columns) and the meeting states (``MeetingStatus``) in which they are allowed.
"yes" where allowed, "-" where refused with 403 (the object is visible, the action is not allowed), and every
outsider gets 404. An allowed action in a state outside its column "states" is refused with 409 (what to do next
is in the message).

==================  =====  ===========  =======  ===========  =====  ============================
action              admin  coordinator  service  participant  guest  states
==================  =====  ===========  =======  ===========  =====  ============================
view meeting        yes    yes          yes      yes          yes    all
view patient        yes    yes          yes      yes          yes    all
manage meeting      yes    yes          yes      -            -      all (transitions: see service)
edit agenda         yes    yes          yes      -            -      scheduled, live
change studies      yes    yes          -        -            -      scheduled, live
import images       yes    yes          -        -            -      scheduled, live
reconcile import    yes    yes          -        -            -      scheduled, live
write decision      yes    yes          -        yes          yes    scheduled, live, closed
sign                yes    yes          yes      yes          yes    scheduled, live, closed (*)
chair room          -      yes          -        -            -      all
enter room          yes    yes          yes      yes          yes    scheduled, live
edit charter        yes    yes          -        -            -      (a board's, not a meeting's)
==================  =====  ===========  =======  ===========  =====  ============================

("view patient" covers the case, its patient, decision, fiche, minutes and images; "manage meeting" covers
rescheduling, status, invitations, join links, attendance, EPR deliveries, prefetch and deferring a case; "edit
agenda" adding, reordering, editing and withdrawing cases; "enter room" the live room's socket, asked again while
it runs (rcp.room.revocation), so that a closed meeting or a withdrawn invitation ends it; "edit charter" the
board's type, required specialties and minimum (rcp.scheduling.charter), asked of the board (:func:`require_board`):
the quorum rule of every decision of the board follows it, so neither a service account nor a participant changes
it. (*) Who signs among
those who see the case is the minutes' rule, :func:`rcp.minutes.versions.check_signer`: a physician invited to the meeting and present at the
discussion, from their own sign-in (never a guest session or a service token), after re-authenticating; this
table only keeps outsiders out (404) and cancelled meetings unsigned (409). Withdrawing a signed version entered in
error is under the same row, with its own rule in rcp.minutes.withdrawals: the version's signer, or those who
"manage meeting" (the board's coordinators, administrators), from their own sign-in, after re-authenticating.)

Actions without a meeting, by role (a join-link session is a ``guest`` whatever its account's role; anonymous
callers get 401 everywhere except sign-in, join links, the health check and static files):

=====================  =====  ===========  =========  =======  =====
action                 admin  coordinator  clinician  service  guest
=====================  =====  ===========  =========  =======  =====
create board           yes    yes          -          -        -
find patient           yes    yes          -          -        -
register patient       yes    yes          -          yes      -
list people            yes    yes          -          -        -
view audit             yes    -            -          -        -
manage accounts        yes    -            -          -        -
=====================  =====  ===========  =========  =======  =====

The routes anonymous callers reach are :data:`PUBLIC_ROUTES`: signing in (a password and its second factor, a join
link, or the round trip through an OpenID Connect provider, whose callback is protected by its ``state`` bound to the browser and whose
back-channel logout by the provider's signed logout token: rcp.auth.sso), choosing the language, the health and readiness checks, the
metrics (their own bearer token: rcp.monitoring) and the OpenAPI document (and static files). Each checks its own credential; none shows patient data.

"find patient" is the look-up of a registered patient outside one's meetings, by an exact identifier *with* its
assigning authority (an IPP and its hospital, or the INS); it is audited, and the patient found may then be put on
the caller's agenda. A name, or a bare identifier, searches only the patients of the caller's meetings.
"manage accounts" is the account administration pages (rcp.auth.accounts): create, deactivate, set role,
specialty, RPPS, e-mail and names, reset a password or a second factor. Changing one's own password (with the
current one) is any signed-in account's own business, not an action of this table.

The room's commands (:data:`ROOM_COMMANDS`): entering the room is ``view meeting``; moving the room to another
case (or closing the current one) and handing the floor over are ``chair room``; the others (floor requests, the shared view, marks, pointer,
media state) are any participant's, within the room's own rules of the moment (``rcp.room.state``).

``tests/security/test_matrix.py`` walks every route of the application for every role against in-scope and
out-of-scope objects and checks the status these tables give; a route it does not know fails it.

Reading patient data and auditing the read are one call (:func:`read_case`, :func:`read_patient`,
:func:`read_meeting_cases`), so neither can be forgotten: the audit row (DCM 110110 Patient Record) names the
patient. Every refusal (401 aside) is a DCM 110113 Security Alert naming who and what, in the service's own
identifiers, never patient data: the routes raise :class:`NotVisible` / :class:`NotPermitted`, and the app's error
handler (or the room's socket) records them with :func:`record_refusal` once the request's own transaction has
rolled back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from rcp.auth import audit
from rcp.auth.models import AuditEvent, Role
from rcp.clock import utcnow
from rcp.errors import Conflict, Forbidden, NotAuthenticated, NotFound, RcpError
from rcp.scheduling.models import Board, BoardCoordinator, Case, Invitation, Meeting, MeetingStatus, Patient

__all__ = [
    "MEETING_RULES",
    "PUBLIC_ROUTES",
    "ROLE_RULES",
    "ROOM_COMMANDS",
    "SERVER_COMMANDS",
    "Action",
    "Alert",
    "NotPermitted",
    "NotVisible",
    "Standing",
    "allows",
    "allows_board",
    "board_for_user",
    "case_for_user",
    "decide",
    "found_by_identifier",
    "is_admin",
    "manages_board",
    "may_see_study",
    "meeting_for_user",
    "read_case",
    "read_meeting_cases",
    "read_patient",
    "record_reads",
    "record_refusal",
    "require",
    "require_board",
    "require_case",
    "require_meeting",
    "role_of",
    "standing",
    "visible_board_ids",
    "visible_meeting_ids",
    "visible_patient_ids",
]


class Action(StrEnum):
    view_meeting = "view meeting"
    view_patient = "view patient"
    manage_meeting = "manage meeting"
    edit_agenda = "edit agenda"
    change_studies = "change studies"
    import_images = "import images"
    #: File another hospital's images under the case's patient (IHE Import Reconciliation, rcp.imaging.reconcile).
    reconcile_import = "reconcile import"
    write_decision = "write decision"
    sign = "sign"
    chair_room = "chair room"
    enter_room = "enter room"
    #: A board's charter: its FRCP type, required specialties and minimum (asked of the board, not a meeting).
    edit_charter = "edit charter"
    # Without a meeting:
    create_board = "create board"
    find_patient = "find patient"
    register_patient = "register patient"
    list_people = "list people"
    view_audit = "view audit"
    manage_accounts = "manage accounts"


class Standing(StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    service = "service"
    participant = "participant"
    guest = "guest"
    outsider = "outsider"


_ALL_STATES = frozenset(MeetingStatus)
_OPEN = frozenset({MeetingStatus.scheduled, MeetingStatus.live})
_HELD = frozenset({MeetingStatus.scheduled, MeetingStatus.live, MeetingStatus.closed})
_S = Standing

#: The meeting table of the module docstring: action -> (standings allowed, meeting states allowed).
MEETING_RULES: dict[Action, tuple[frozenset[Standing], frozenset[str]]] = {
    Action.view_meeting: (frozenset({_S.admin, _S.coordinator, _S.service, _S.participant, _S.guest}), _ALL_STATES),
    Action.view_patient: (frozenset({_S.admin, _S.coordinator, _S.service, _S.participant, _S.guest}), _ALL_STATES),
    Action.manage_meeting: (frozenset({_S.admin, _S.coordinator, _S.service}), _ALL_STATES),
    Action.edit_agenda: (frozenset({_S.admin, _S.coordinator, _S.service}), _OPEN),
    Action.change_studies: (frozenset({_S.admin, _S.coordinator}), _OPEN),
    Action.import_images: (frozenset({_S.admin, _S.coordinator}), _OPEN),
    Action.reconcile_import: (frozenset({_S.admin, _S.coordinator}), _OPEN),
    Action.write_decision: (frozenset({_S.admin, _S.coordinator, _S.participant, _S.guest}), _HELD),
    Action.sign: (frozenset({_S.admin, _S.coordinator, _S.service, _S.participant, _S.guest}), _HELD),
    Action.chair_room: (frozenset({_S.coordinator}), _ALL_STATES),
    Action.enter_room: (frozenset({_S.admin, _S.coordinator, _S.service, _S.participant, _S.guest}), _OPEN),
    Action.edit_charter: (frozenset({_S.admin, _S.coordinator}), _ALL_STATES),
}

#: The role table of the module docstring: action -> roles allowed ("guest" is any join-link session).
ROLE_RULES: dict[Action, frozenset[str]] = {
    Action.create_board: frozenset({Role.admin, Role.coordinator}),
    Action.find_patient: frozenset({Role.admin, Role.coordinator}),
    Action.register_patient: frozenset({Role.admin, Role.coordinator, Role.service}),
    Action.list_people: frozenset({Role.admin, Role.coordinator}),
    Action.view_audit: frozenset({Role.admin}),
    Action.manage_accounts: frozenset({Role.admin}),
}

#: Routes anonymous callers reach (see the module docstring); ``tests/security/test_matrix.py`` checks the list.
PUBLIC_ROUTES: frozenset[str] = frozenset({
    "/health", "/ready", "/metrics", "/api/openapi.json", "/", "/settings/locale",
    "/login", "/api/session", "/join", "/join/renew",
    # Sign-in's later steps (second factor, its enrolment, a reset password's change): each answers only the
    # pending sign-in cookie that a right password set (rcp.auth.login_steps), else sends back to /login.
    "/login/code", "/login/enrol", "/login/password",
    "/auth/oidc/{provider}", "/auth/oidc/{provider}/callback", "/auth/oidc/{provider}/backchannel-logout",
})

#: The room's commands (``rcp.room.commands``, by class name) and the action each needs. Entering the room is
#: ``view meeting`` (checked when the socket opens); the chair's commands need ``chair room``, which the socket
#: resolves once per connection into the participant's role (:attr:`rcp.room.events.Participant.chairs`); the
#: room's state machine (``rcp.room.state.decide``) then refuses them to anyone else, and adds its own rules of
#: the moment (only the presenter moves the shared view, a held floor is taken only by the chair...).
ROOM_COMMANDS: dict[str, Action] = {
    "TakeFloor": Action.view_meeting,
    "RequestFloor": Action.view_meeting,
    "WithdrawRequest": Action.view_meeting,
    "ReleaseFloor": Action.view_meeting,
    "SetMode": Action.view_meeting,
    "SetMedia": Action.view_meeting,
    "SetPath": Action.view_meeting,
    "ChangeView": Action.view_meeting,
    "AddMark": Action.view_meeting,
    "RemoveMark": Action.view_meeting,
    "HandOver": Action.chair_room,
    "SetCase": Action.chair_room,
    "NextCase": Action.chair_room,
    "CloseCase": Action.chair_room,
}
#: Commands the server issues itself (never parsed from a participant's message).
SERVER_COMMANDS = frozenset({"Join", "Leave", "Tick", "NoteDecisionField", "NoteDecisionSigned"})

#: What a refusal says, per action (the 403 message; 404 never says more than "not among yours").
_FORBIDDEN: dict[Action, str] = {
    Action.manage_meeting: "Only the board's coordinators can change this meeting.",
    Action.edit_agenda: "Only the board's coordinators can change this meeting.",
    Action.change_studies: "Only the board's coordinators attach, detach or import a case's studies.",
    Action.import_images: "Only the board's coordinators attach, detach or import a case's studies.",
    Action.reconcile_import: "Only the board's coordinators reconcile another hospital's files with a case's patient.",
    Action.write_decision: "Only the meeting's participants write its decisions.",
    Action.chair_room: "Only the board's coordinators chair the meeting.",
    Action.edit_charter: "Only the board's coordinators change its charter (type and required specialties).",
    Action.create_board: "Only coordinators and administrators create boards.",
    Action.find_patient: "Only coordinators look up registered patients by identifier.",
    Action.register_patient: "Only coordinators register patients.",
    Action.list_people: "Only coordinators look up people to invite.",
    Action.view_audit: "Only administrators read the audit trail.",
    Action.manage_accounts: "Only administrators manage accounts.",
}


def _state_refusal(action: Action, status: str) -> Conflict:
    if action == Action.edit_agenda:
        return Conflict(f"This meeting is {status}: its agenda can no longer change. Add the case to the board's "
                        "next meeting instead.", fields={"meeting_id": f"meeting is {status}"})
    if action in {Action.change_studies, Action.import_images, Action.reconcile_import}:
        return Conflict(f"This meeting is {status}: its cases' studies can no longer change. Add the case to the "
                        "board's next meeting instead.", fields={"meeting_id": f"meeting is {status}"})
    if action == Action.enter_room:
        return Conflict(f"This meeting is {status}: its room is closed. Its minutes are on the meeting's page.",
                        fields={"meeting_id": f"meeting is {status}"})
    if action in {Action.write_decision, Action.sign}:
        return Conflict(f"This meeting was {status}: its decisions cannot be edited or signed.",
                        fields={"meeting_id": f"meeting is {status}"})
    return Conflict(f"This meeting is {status}: this is no longer possible.",
                    fields={"meeting_id": f"meeting is {status}"})


# --- refusals ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """What a refusal records: the action and the object, in the service's identifiers only."""

    action: Action
    what: str
    patient_id: int | None = None
    meeting_id: int | None = None


class NotVisible(NotFound):
    """404: the object is outside the caller's scope (or does not exist: the answer is the same)."""

    def __init__(self, message: str, *, alert: Alert) -> None:
        super().__init__(message)
        self.alert = alert


class NotPermitted(Forbidden):
    """403: the object is visible, the action is not allowed to this caller."""

    def __init__(self, message: str, *, alert: Alert) -> None:
        super().__init__(message)
        self.alert = alert


async def record_refusal(db: Any, error: RcpError, conn: HTTPConnection | None) -> None:
    """DCM 110113 Security Alert for a refusal of this policy, in its own unit of work.

    Called by the app's error handler and the room socket after the request's transaction rolled back, so the
    trace of an attempt does not go with it (and no second writer waits on the first one's lock).
    """
    alert = getattr(error, "alert", None)
    if not isinstance(alert, Alert) or db is None:
        return
    async with db.session() as s:
        await audit.record(s, event="security_alert", action="E", outcome=4, request=conn,
                           patient_id=alert.patient_id, meeting_id=alert.meeting_id,
                           what=f"refused ({error.status}): {alert.action} on {alert.what}")


# --- who the caller is ------------------------------------------------------------------------------------------


def _require_user(user: Any) -> int:
    if user is None or not getattr(user, "is_authenticated", False):
        raise NotAuthenticated()
    return int(user.id)


def _scope(user: Any) -> int | None:
    scope = getattr(user, "meeting_scope", None)
    return int(scope) if scope is not None else None


def is_admin(user: Any) -> bool:
    """An administrator's account session (a join link opened by an administrator is a guest)."""
    return getattr(user, "role", "") == Role.admin and _scope(user) is None


def role_of(user: Any) -> str:
    """The role the policy applies: ``anonymous``, ``guest`` for any join-link session, else the account's role."""
    if user is None or not getattr(user, "is_authenticated", False):
        return "anonymous"
    if _scope(user) is not None or getattr(user, "role", "") == Role.guest:
        return "guest"
    return str(getattr(user, "role", ""))


async def standing(session: AsyncSession, user: Any, meeting: Meeting) -> Standing:
    """The caller's standing towards ``meeting`` (see the module docstring)."""
    user_id = _require_user(user)
    scope = _scope(user)
    invited = (await session.exec(select(Invitation.id).where(Invitation.meeting_id == meeting.id,
                                                              Invitation.user_id == user_id))).first() is not None
    if scope is not None or getattr(user, "role", "") == Role.guest:
        return Standing.guest if scope == meeting.id and invited else Standing.outsider
    role = getattr(user, "role", "")
    if role == Role.admin:
        return Standing.admin
    if role in {Role.coordinator, Role.service}:
        runs = await session.get(BoardCoordinator, (meeting.board_id, user_id))
        if runs is not None:
            return Standing.coordinator if role == Role.coordinator else Standing.service
    return Standing.participant if invited else Standing.outsider


def decide(who: Standing, action: Action, status: str) -> int:
    """The answer of the meeting table: 200 allowed, 404 outside scope, 403 not this action, 409 not now."""
    if who == Standing.outsider:
        return 404
    standings, states = MEETING_RULES[action]
    if who not in standings:
        return 403
    if status not in states:
        return 409
    return 200


async def allows(session: AsyncSession, user: Any, action: Action, meeting: Meeting) -> bool:
    """Whether ``action`` on ``meeting`` is allowed now (for showing a button; routes call the ``require_*``)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return decide(await standing(session, user, meeting), action, meeting.status) == 200


def require(user: Any, action: Action) -> None:
    """An action without a meeting (the role table): 401 anonymous, 403 when the role may not."""
    _require_user(user)
    if role_of(user) not in ROLE_RULES[action]:
        raise NotPermitted(_FORBIDDEN[action], alert=Alert(action, "the service"))


async def _check(session: AsyncSession, user: Any, action: Action, meeting: Meeting, alert: Alert,
                 not_found: str) -> None:
    verdict = decide(await standing(session, user, meeting), action, meeting.status)
    if verdict == 404:
        raise NotVisible(not_found, alert=alert)
    if verdict == 403:
        raise NotPermitted(_FORBIDDEN.get(action, "This is not allowed to you."), alert=alert)
    if verdict == 409:
        raise _state_refusal(action, meeting.status)


async def require_meeting(session: AsyncSession, user: Any, meeting_id: int,
                          action: Action = Action.view_meeting) -> Meeting:
    """The meeting, if ``action`` on it is allowed to ``user`` now; else 404 / 403 / 409 (see the table)."""
    _require_user(user)
    alert = Alert(action, f"meeting {meeting_id}", meeting_id=meeting_id)
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None:
        raise NotVisible(f"No meeting {meeting_id} among yours.", alert=alert)
    await _check(session, user, action, meeting, alert, f"No meeting {meeting_id} among yours.")
    return meeting


async def require_case(session: AsyncSession, user: Any, case_id: int,
                       action: Action = Action.view_patient) -> tuple[Case, Meeting]:
    """The case and its meeting, if ``action`` on the case is allowed to ``user`` now.

    A write is audited by the code that writes; a read goes through :func:`read_case`, which audits it.
    """
    _require_user(user)
    case = await session.get(Case, case_id)
    meeting = await session.get(Meeting, case.meeting_id) if case is not None else None
    if case is None or meeting is None:
        raise NotVisible(f"No case {case_id} among your meetings.", alert=Alert(action, f"case {case_id}"))
    alert = Alert(action, f"case {case_id}", patient_id=case.patient_id, meeting_id=case.meeting_id)
    await _check(session, user, action, meeting, alert, f"No case {case_id} among your meetings.")
    return case, meeting


async def require_board(session: AsyncSession, user: Any, board_id: int,
                        action: Action = Action.view_meeting) -> Board:
    """A board is visible to its coordinators, to admins and to anyone who sees one of its meetings;
    ``Action.manage_meeting`` (scheduling its meetings) is for its coordinators (and admins)."""
    _require_user(user)
    alert = Alert(action, f"board {board_id}")
    board = await session.get(Board, board_id)
    visible = board is not None and (
        await session.exec(select(Board.id).where(
            Board.id == board_id,
            or_(col(Board.id).in_(visible_board_ids(user)),
                col(Board.id).in_(select(Meeting.board_id).where(col(Meeting.id).in_(visible_meeting_ids(user))))),
        ))
    ).first() is not None
    if board is None or not visible:
        raise NotVisible(f"No board {board_id} among yours.", alert=alert)
    if action != Action.view_meeting:
        standings, _states = MEETING_RULES[action]
        if _board_standing(user, await _runs(session, user, board_id)) not in standings:
            raise NotPermitted(_FORBIDDEN.get(action, "This is not allowed to you."), alert=alert)
    return board


async def _runs(session: AsyncSession, user: Any, board_id: int) -> bool:
    return await session.get(BoardCoordinator, (board_id, int(user.id))) is not None


async def manages_board(session: AsyncSession, user: Any, board_id: int) -> bool:
    """Whether the caller may schedule this board's meetings (``manage meeting`` at the board level)."""
    return await allows_board(session, user, Action.manage_meeting, board_id)


async def allows_board(session: AsyncSession, user: Any, action: Action, board_id: int) -> bool:
    """Whether ``action`` at the board level is allowed (for showing a link; routes call :func:`require_board`)."""
    if not getattr(user, "is_authenticated", False):
        return False
    standings, _states = MEETING_RULES[action]
    return _board_standing(user, await _runs(session, user, board_id)) in standings


def _board_standing(user: Any, runs: bool) -> Standing:
    role = role_of(user)
    if role == Role.admin:
        return Standing.admin
    if runs and role == Role.coordinator:
        return Standing.coordinator
    if runs and role == Role.service:
        return Standing.service
    return Standing.participant


# --- reads of patient data: checked and audited in one call ------------------------------------------------------


async def record_reads(session: AsyncSession, user: Any, cases: Iterable[Case], *, what: str,
                       request: HTTPConnection | None = None) -> None:
    """One DCM 110110 Patient Record read per case shown, naming its patient (``what`` may hold ``{case}``)."""
    for case in cases:
        await audit.record(session, event="patient_record", action="R", request=request, user=user,
                           patient_id=case.patient_id, meeting_id=case.meeting_id,
                           what=what.format(case=case.id))


async def read_case(session: AsyncSession, user: Any, case_id: int, *, what: str,
                    request: HTTPConnection | None = None, action: Action = Action.view_patient) -> Case:
    """The case, if the caller may read it, with the read in the audit trail (``what``: "decision of case 3")."""
    case, _meeting = await require_case(session, user, case_id, action)
    await record_reads(session, user, [case], what=what, request=request)
    return case


async def read_meeting_cases(session: AsyncSession, user: Any, meeting_id: int, *, what: str,
                             request: HTTPConnection | None = None,
                             cases: Sequence[Case] | None = None) -> tuple[Meeting, list[Case]]:
    """The meeting and its cases (all, or ``cases`` of it), each patient's read audited with ``what``."""
    meeting = await require_meeting(session, user, meeting_id, Action.view_patient)
    if cases is None:
        from rcp.scheduling.agenda import meeting_agenda  # the one list of a meeting's cases

        cases = [e.case for e in (await meeting_agenda(session, meeting_id)).entries]
    shown = [c for c in cases if c.meeting_id == meeting_id]
    await record_reads(session, user, shown, what=what, request=request)
    return meeting, shown


def visible_patient_ids(user: Any) -> Select[Any]:
    """Patients of the meetings the caller sees."""
    return select(Case.patient_id).where(col(Case.meeting_id).in_(visible_meeting_ids(user)))


#: A patient found by exact identifier (audited) may be put on the finder's agenda for this long.
FOUND_BY_IDENTIFIER_FOR = timedelta(hours=12)
#: The audit text of such a look-up; :func:`found_by_identifier` looks for it.
IDENTIFIER_LOOKUP = "patient {patient} (identifier look-up)"


async def found_by_identifier(session: AsyncSession, user: Any, patient_id: int) -> bool:
    """Whether the caller looked this patient up by exact identifier recently (an audited ``find patient``)."""
    if role_of(user) not in ROLE_RULES[Action.find_patient]:
        return False
    since = utcnow() - FOUND_BY_IDENTIFIER_FOR
    row = (await session.exec(select(AuditEvent.id).where(
        AuditEvent.user_id == int(user.id), AuditEvent.patient_id == patient_id,
        AuditEvent.what == IDENTIFIER_LOOKUP.format(patient=patient_id), col(AuditEvent.at) >= since,
    ))).first()
    return row is not None


async def read_patient(session: AsyncSession, user: Any, patient_id: int, *, what: str = "patient {patient}",
                       request: HTTPConnection | None = None) -> Patient:
    """The patient, if the caller sees one of their cases (admins: any), with the read audited."""
    _require_user(user)
    alert = Alert(Action.view_patient, f"patient {patient_id}", patient_id=patient_id)
    found = (await session.exec(select(Patient).where(Patient.id == patient_id,
                                                      col(Patient.id).in_(visible_patient_ids(user))))).first()
    if found is None and is_admin(user):
        found = await session.get(Patient, patient_id)
    if found is None:
        raise NotVisible(f"No patient {patient_id} among your meetings.", alert=alert)
    await audit.record(session, event="patient_record", action="R", request=request, user=user,
                       patient_id=patient_id, what=what.format(patient=patient_id))
    return found


# --- visibility as queries (lists) ------------------------------------------------------------------------------


def visible_board_ids(user: Any) -> Select[Any]:
    """Boards the user coordinates (all boards for an admin; none through a join link)."""
    user_id = _require_user(user)
    if _scope(user) is not None:
        return select(Board.id).where(Board.id == -1)
    if is_admin(user):
        return select(Board.id)
    if getattr(user, "role", "") not in {Role.coordinator, Role.service}:
        return select(Board.id).where(Board.id == -1)
    return select(BoardCoordinator.board_id).where(BoardCoordinator.user_id == user_id)


def visible_meeting_ids(user: Any) -> Select[Any]:
    """Meetings the user is invited to, plus those of the boards they coordinate (the ``view meeting`` row).

    A session opened by a join link sees its one meeting, whatever the user's other invitations.
    """
    user_id = _require_user(user)
    scope = _scope(user)
    if scope is not None:
        return select(Invitation.meeting_id).where(Invitation.user_id == user_id, Invitation.meeting_id == scope)
    if is_admin(user):
        return select(Meeting.id)
    invited = select(Invitation.meeting_id).where(Invitation.user_id == user_id)
    coordinated = select(Meeting.id).where(col(Meeting.board_id).in_(visible_board_ids(user)))
    return select(Meeting.id).where(or_(col(Meeting.id).in_(invited), col(Meeting.id).in_(coordinated)))


async def may_see_study(session: AsyncSession, user: Any, study_uid: str) -> Case | None:
    """A visible case the study is attached to (the study is then visible, and that case names its patient)."""
    _require_user(user)
    cases = (await session.exec(select(Case).where(col(Case.meeting_id).in_(visible_meeting_ids(user)))
                                .order_by(col(Case.id).desc()))).all()
    return next((c for c in cases if study_uid in (c.study_uids or [])), None)


# --- the view action under the names the routes used before this module -------------------------------------------


async def meeting_for_user(session: AsyncSession, user: Any, meeting_id: int) -> Meeting:
    """``require_meeting(..., Action.view_meeting)``."""
    return await require_meeting(session, user, meeting_id, Action.view_meeting)


async def case_for_user(session: AsyncSession, user: Any, case_id: int) -> Case:
    """``require_case(..., Action.view_patient)``: the caller must audit what they read (or use read_case)."""
    return (await require_case(session, user, case_id, Action.view_patient))[0]


async def board_for_user(session: AsyncSession, user: Any, board_id: int) -> Board:
    return await require_board(session, user, board_id, Action.view_meeting)
