"""The access matrix, generated: every route of the application × every role × in-scope and out-of-scope objects.

For each route of ``create_app(...).routes`` (API, pages and the room's WebSocket) the test knows which action of
the policy (``rcp.scheduling.access``) it is; the status each role must get is then computed from the policy's own
tables (``MEETING_RULES``, ``ROLE_RULES``) and checked against the running service. A route missing from
:data:`ROUTES` fails the test: a new route must be classified before it ships. The room's commands are classified
the same way (``access.ROOM_COMMANDS``), and the chair's commands are tried over the socket.

A refusal must be exactly the policy's status (404 outside scope, 403 visible but not allowed, 409 not in this
meeting state, 401 — or the sign-in redirect for pages — when anonymous); an allowed request must not be refused
(it may still fail validation: the test sends plausible bodies, not necessarily accepted ones).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect

from rcp.app import create_app
from rcp.auth.models import AuditEvent, LoginSession, Role
from rcp.auth.sessions import COOKIE_NAME, cookie_signer, create_api_token
from rcp.clock import utcnow
from rcp.config import Settings
from rcp.db import Database
from rcp.epr.models import Delivery, DeliveryStatus
from rcp.imaging.archive import open_archive
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from rcp.mail import Mail, MailStatus
from rcp.minutes.copies import COPY_MAIL
from rcp.room import commands
from rcp.scheduling import access
from rcp.scheduling.access import Action, Standing
from rcp.scheduling.models import BoardCoordinator, Case, MeetingStatus
from tests.conftest import Client, sign_in
from tests.factories import (
    HOSPITAL,
    MadeMeeting,
    make_board,
    make_case,
    make_clinician,
    make_coordinator,
    make_invitation,
    make_meeting,
    make_user,
)
from tests.servers import ServerThread

ROLES = ("admin", "coordinator", "other_coordinator", "invited", "uninvited", "guest", "service", "anonymous")
#: open: a scheduled meeting of board A; closed: a closed meeting of board A; other: a meeting of board B.
OBJECTS = ("open", "closed", "other")

#: Each role's standing towards each object (board A is run by "coordinator" and the service account; board B by
#: "other_coordinator"; "invited" is invited to both meetings of board A; the guest's join link opens "open").
STANDINGS: dict[str, dict[str, Standing]] = {
    "admin": dict.fromkeys(OBJECTS, Standing.admin),
    "coordinator": {"open": Standing.coordinator, "closed": Standing.coordinator, "other": Standing.outsider},
    "other_coordinator": {"open": Standing.outsider, "closed": Standing.outsider, "other": Standing.coordinator},
    "invited": {"open": Standing.participant, "closed": Standing.participant, "other": Standing.outsider},
    "uninvited": dict.fromkeys(OBJECTS, Standing.outsider),
    "guest": {"open": Standing.guest, "closed": Standing.outsider, "other": Standing.outsider},
    "service": {"open": Standing.service, "closed": Standing.service, "other": Standing.outsider},
}
POLICY_ROLE = {"admin": Role.admin, "coordinator": Role.coordinator, "other_coordinator": Role.coordinator,
               "invited": Role.clinician, "uninvited": Role.clinician, "guest": "guest", "service": Role.service}

ALLOWED = 200
#: A page form refused, whichever way the page says it (403, 404, or the form again with 422).
REFUSED = -1
#: What an allowed request may answer: anything but a refusal of the policy or a crash.
REFUSALS = frozenset({401, 403, 404})


@dataclass
class Target:
    """The ids of one object (a meeting of the world) the routes are called with."""

    status: str
    meeting_id: int
    board_id: int
    case_id: int
    patient_id: int
    invitation_id: int
    delivery_id: int
    mail_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    made: MadeMeeting


@dataclass
class World:
    db: Database
    base_url: str
    targets: dict[str, Target]
    clients: dict[str, Any] = field(default_factory=dict)
    #: Makes a new client of the role (for the routes that end the caller's session).
    renew: dict[str, Callable[[], Awaitable[Client]]] = field(default_factory=dict)
    guest_user_id: int = 0
    #: Each signed-in role's user id (whose security alerts the walk counts).
    user_ids: dict[str, int] = field(default_factory=dict)

    async def alerts(self, name: str) -> int:
        """How many security alerts (DCM 110113) name this role's user."""
        from sqlalchemy import func

        async with self.db.session() as s:
            return int((await s.exec(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.user_id == self.user_ids[name], AuditEvent.event_code == "110113"))).one())

    async def fresh_invitation(self, obj: str) -> int:
        return (await make_invitation(self.db, self.targets[obj].meeting_id, await make_clinician(self.db))).id

    async def fresh_case(self, obj: str) -> int:
        return (await make_case(self.db, self.targets[obj].meeting_id)).id


# --- what each route is -------------------------------------------------------------------------------------------

Body = Callable[[World, str], Awaitable[dict[str, Any]]]


async def _none(world: World, obj: str) -> dict[str, Any]:
    return {}


def _json(value: dict[str, Any] | Callable[[World, str], dict[str, Any]]) -> Body:
    async def body(world: World, obj: str) -> dict[str, Any]:
        return {"json": value(world, obj) if callable(value) else value}
    return body


def _form(value: dict[str, Any] | Callable[[World, str], dict[str, Any]]) -> Body:
    async def body(world: World, obj: str) -> dict[str, Any]:
        return {"data": value(world, obj) if callable(value) else value}
    return body


def _upload() -> Body:
    async def body(world: World, obj: str) -> dict[str, Any]:
        return {"files": [("files", ("a.dcm", b"not dicom", "application/dicom"))]}
    return body


@dataclass(frozen=True)
class Rule:
    """``kind``: public (no check), signed (any signed-in caller), role (ROLE_RULES), meeting (MEETING_RULES on
    the object's meeting), board (scheduling on the object's board), own_invitation (the invitee or a manager),
    step_up (a fresh login at an identity provider: a physician's own session)."""

    kind: str
    action: Action | None = None
    body: Body = _none
    #: Path parameter made fresh for each request (a destructive action must not remove the next role's object).
    fresh: str = ""
    #: The sign-in-ending routes run last for each role.
    ends_session: bool = False
    query: str = ""
    #: Past the policy's door the route names an object below the case that the matrix's cases do not have (a
    #: signed version): its "no such version" 404 is not a refusal; the policy's own refusals still count.
    below_case: bool = False


def public(body: Body = _none) -> Rule:
    return Rule("public", body=body)


def signed(body: Body = _none, *, ends_session: bool = False, query: str = "") -> Rule:
    return Rule("signed", body=body, ends_session=ends_session, query=query)


def role(action: Action, body: Body = _none, query: str = "") -> Rule:
    return Rule("role", action, body=body, query=query)


def meeting(action: Action, body: Body = _none, fresh: str = "", query: str = "", *,
            below_case: bool = False) -> Rule:
    return Rule("meeting", action, body=body, fresh=fresh, query=query, below_case=below_case)


def _meeting_in(world: World, obj: str) -> dict[str, Any]:
    return {"board_id": world.targets[obj].board_id, "starts_at": "2031-06-05T14:00"}


def _meeting_form(world: World, obj: str) -> dict[str, Any]:
    return {"board_id": str(world.targets[obj].board_id), "date": "2031-06-05", "time": "14:00",
            "duration_min": "60", "title": "Matrix"}


def _charter_form(world: World, obj: str) -> dict[str, Any]:
    """The charter the factories give a board (organ board, the INCa three): saving it changes nothing."""
    return {"type_code": "312419003", "required_specialties": ["surgeon", "medical_oncologist", "radiotherapist"],
            "minimum_specialties": "3"}


def _guest_in(world: World, obj: str) -> dict[str, Any]:
    return {"family_name": "Matrice", "prefix": "Dr", "email": f"m{secrets.token_hex(4)}@chu-x.fr", "specialty": "surgeon"}


def _guest_form(world: World, obj: str) -> dict[str, Any]:
    return {f"guest_{k}": v for k, v in _guest_in(world, obj).items()}


#: Every route of the application, by (path template, method): what the policy says about it.
ROUTES: dict[tuple[str, str], Rule] = {
    ("/health", "GET"): public(),
    ("/ready", "GET"): public(),
    # Its own bearer token (RCP_METRICS_TOKEN; off in the shared app: 404): tests/test_monitoring.py.
    ("/metrics", "GET"): public(),
    ("/api/openapi.json", "GET"): public(),
    ("/join", "GET"): public(),
    ("/join", "POST"): public(_form({"token": "not-a-token"})),
    ("/join/renew", "POST"): public(_form({"token": "not-a-token"})),
    ("/login", "GET"): public(),
    ("/login", "POST"): public(_form({"username": "nobody", "password": "x"})),
    # Sign-in's later steps answer only a pending sign-in's own cookie (rcp.auth.login_steps); without one,
    # back to /login.
    ("/login/code", "GET"): public(),
    ("/login/code", "POST"): public(_form({"pending_csrf": "x", "code": "000000"})),
    ("/login/enrol", "GET"): public(),
    ("/login/enrol", "POST"): public(_form({"pending_csrf": "x", "code": "000000"})),
    ("/login/password", "GET"): public(),
    ("/login/password", "POST"): public(_form({"pending_csrf": "x", "new_password": "x" * 12,
                                               "new_password2": "x" * 12})),
    ("/settings/locale", "POST"): public(_form({"locale": "en", "next": "/meetings"})),
    ("/auth/oidc/{provider}", "GET"): public(),
    ("/auth/oidc/{provider}/callback", "GET"): public(),
    ("/auth/oidc/{provider}/backchannel-logout", "POST"): public(_form({"logout_token": "not-a-token"})),
    ("/auth/oidc/{provider}/confirm", "GET"): Rule("step_up"),
    ("/api/session", "POST"): public(_json({"username": "nobody", "password": "x"})),
    # Account administration (rcp.auth.accounts): administrators only; a fresh account for each request.
    ("/admin/users", "GET"): role(Action.manage_accounts),
    ("/admin/users/new", "GET"): role(Action.manage_accounts),
    ("/admin/users/new", "POST"): role(Action.manage_accounts, _form({"username": "", "role": "clinician"})),
    ("/admin/users/{user_id:int}", "GET"): Rule("role", Action.manage_accounts, fresh="user_id"),
    ("/admin/users/{user_id:int}", "POST"): Rule("role", Action.manage_accounts, fresh="user_id",
                                                 body=_form({"family_name": "", "role": "clinician"})),
    ("/admin/users/{user_id:int}/password", "POST"): Rule("role", Action.manage_accounts, fresh="user_id"),
    ("/admin/users/{user_id:int}/second-factor", "POST"): Rule("role", Action.manage_accounts, fresh="user_id"),
    # One's own password: any signed-in account (a too-short new password is refused before the current one).
    ("/account/password", "GET"): signed(),
    ("/account/password", "POST"): signed(_form({"current_password": "x", "new_password": "short",
                                                 "new_password2": "short"})),
    ("/api/session", "GET"): signed(),
    ("/logout", "POST"): signed(ends_session=True),
    ("/api/session", "DELETE"): signed(ends_session=True),
    ("/api/users", "GET"): role(Action.list_people),
    ("/api/audit", "GET"): role(Action.view_audit),
    ("/audit/patients/{patient_id:int}", "GET"): role(Action.view_audit),
    ("/api/boards", "GET"): signed(),
    ("/api/boards", "POST"): role(Action.create_board, _json(lambda w, o: {"name": f"RCP {secrets.token_hex(4)}",
                                                                           "type_code": "312419003"})),
    ("/api/boards/{board_id:int}", "GET"): Rule("board_view"),
    ("/api/boards/{board_id:int}", "PATCH"): Rule("charter", Action.edit_charter,
                                                  body=_json({"minimum_specialties": 3})),
    ("/boards/{board_id:int}/charter", "GET"): Rule("charter", Action.edit_charter),
    ("/boards/{board_id:int}/charter", "POST"): Rule("charter", Action.edit_charter, body=_form(_charter_form)),
    ("/api/meetings", "GET"): signed(),
    ("/api/meetings", "POST"): Rule("board", Action.manage_meeting, body=_json(_meeting_in)),
    ("/api/meetings/{meeting_id:int}", "GET"): meeting(Action.view_meeting),
    ("/api/meetings/{meeting_id:int}", "PATCH"): meeting(Action.manage_meeting, _json({"duration_min": 75})),
    ("/api/meetings/{meeting_id:int}/cases", "POST"): meeting(
        Action.edit_agenda, _json(lambda w, o: {"patient_id": w.targets[o].patient_id, "question": "?"})),
    ("/api/meetings/{meeting_id:int}/agenda", "PUT"): meeting(
        Action.edit_agenda, _json(lambda w, o: {"case_ids": [w.targets[o].case_id]})),
    ("/api/meetings/{meeting_id:int}/invitations", "GET"): meeting(Action.view_meeting),
    ("/api/meetings/{meeting_id:int}/invitations", "POST"): meeting(
        Action.edit_agenda, _json(lambda w, o: {"user_id": w.guest_user_id})),
    ("/api/meetings/{meeting_id:int}/guests", "POST"): meeting(Action.edit_agenda, _json(_guest_in)),
    ("/api/invitations/{invitation_id:int}/send", "POST"): meeting(Action.edit_agenda),
    ("/api/invitations/{invitation_id:int}", "PATCH"): Rule("own_invitation", body=_json({"response": "accepted"})),
    ("/api/invitations/{invitation_id:int}", "DELETE"): meeting(Action.edit_agenda, fresh="invitation_id"),
    ("/api/cases/{case_id:int}", "GET"): meeting(Action.view_patient),
    ("/api/cases/{case_id:int}", "PATCH"): meeting(Action.edit_agenda, _json({"staging": "cT1aN0M0"})),
    ("/api/cases/{case_id:int}/defer", "POST"): meeting(Action.manage_meeting, fresh="case_id"),
    ("/api/cases/{case_id:int}/withdraw", "POST"): meeting(Action.edit_agenda, fresh="case_id"),
    ("/api/patients/search", "POST"): role(Action.find_patient, _json({"identifier": "IPP000", "assigner": HOSPITAL})),
    ("/api/patients", "POST"): role(Action.register_patient, _json({"family_name": "Matrice", "identifiers": []})),
    ("/api/patients/duplicates", "POST"): role(Action.find_patient, _json({"family_name": "Matrice",
                                                                           "birth_date": "1960-01-01"})),
    ("/api/patients/{patient_id:int}", "GET"): meeting(Action.view_patient),
    ("/", "GET"): public(),  # a redirect to /meetings
    ("/meetings", "GET"): signed(),
    ("/meetings/new", "GET"): Rule("schedule_page"),
    ("/meetings/new", "POST"): Rule("board", Action.manage_meeting, body=_form(_meeting_form)),
    ("/meetings/{meeting_id:int}", "GET"): meeting(Action.view_meeting),
    ("/meetings/{meeting_id:int}/status", "POST"): meeting(Action.manage_meeting, _form({"action": "none"})),
    ("/meetings/{meeting_id:int}/cases", "POST"): meeting(Action.edit_agenda, _form(lambda w, o: {
        "patient_mode": "existing", "patient_id": str(w.targets[o].patient_id), "question": "?"})),
    ("/meetings/{meeting_id:int}/patient-search", "POST"): meeting(Action.edit_agenda, _form({"q": "Matrice"})),
    ("/meetings/{meeting_id:int}/agenda", "POST"): meeting(Action.edit_agenda, _form(lambda w, o: {
        "case_id": str(w.targets[o].case_id), "direction": "down"})),
    ("/meetings/{meeting_id:int}/invitations", "POST"): meeting(Action.edit_agenda, _form(lambda w, o: {
        "user_id": str(w.guest_user_id), "specialty": "surgeon"})),
    ("/meetings/{meeting_id:int}/guests", "POST"): meeting(Action.edit_agenda, _form(_guest_form)),
    ("/invitations/{invitation_id:int}/send", "POST"): meeting(Action.edit_agenda),
    ("/invitations/{invitation_id:int}/remove", "POST"): meeting(Action.edit_agenda, fresh="invitation_id"),
    ("/invitations/{invitation_id:int}/respond", "POST"): Rule("own_invitation", body=_form({"response": "accepted"})),
    ("/cases/{case_id:int}", "GET"): meeting(Action.view_patient),
    ("/cases/{case_id:int}", "POST"): meeting(Action.edit_agenda, _form({"question": "Matrice ?"})),
    ("/cases/{case_id:int}/defer", "POST"): meeting(Action.manage_meeting, fresh="case_id"),
    ("/cases/{case_id:int}/withdraw", "POST"): meeting(Action.edit_agenda, fresh="case_id"),
    ("/epr/cases/{case_id:int}/deliveries", "GET"): meeting(Action.manage_meeting),
    ("/epr/meetings/{meeting_id:int}/deliveries", "GET"): meeting(Action.manage_meeting),
    ("/epr/deliveries/{delivery_id:int}/retry", "POST"): meeting(Action.manage_meeting),
    ("/api/epr/cases/{case_id:int}/deliveries", "GET"): meeting(Action.manage_meeting),
    ("/api/epr/meetings/{meeting_id:int}/deliveries", "GET"): meeting(Action.manage_meeting),
    ("/api/epr/deliveries/{delivery_id:int}/retry", "POST"): meeting(Action.manage_meeting),
    ("/epr/mail-copies/{mail_id:int}/retry", "POST"): meeting(Action.manage_meeting),
    ("/api/epr/mail-copies/{mail_id:int}/retry", "POST"): meeting(Action.manage_meeting),
    ("/api/imaging/studies/{study_uid}/series", "GET"): meeting(Action.view_patient),
    ("/api/imaging/studies/{study_uid}/series/{series_uid}", "GET"): meeting(Action.view_patient),
    ("/api/imaging/frames/{study_uid}/{series_uid}/{sop_uid}/{frame:int}", "GET"): meeting(Action.view_patient),
    ("/api/cases/{case_id:int}/studies", "GET"): meeting(Action.view_patient),
    ("/api/cases/{case_id:int}/studies", "POST"): meeting(Action.change_studies, _json({"detach": ["1.2.3"]})),
    ("/api/cases/{case_id:int}/imports", "POST"): meeting(Action.import_images, _upload()),
    ("/api/cases/{case_id:int}/prefetch", "POST"): meeting(Action.view_patient),
    ("/api/cases/{case_id:int}/prefetch", "GET"): meeting(Action.view_patient),
    ("/api/meetings/{meeting_id:int}/prefetch", "POST"): meeting(Action.view_meeting),
    ("/api/meetings/{meeting_id:int}/prefetch", "GET"): meeting(Action.view_meeting),
    ("/api/cases/{case_id:int}/decision", "GET"): meeting(Action.view_patient),
    ("/api/cases/{case_id:int}/decision/fields/{name}", "PUT"): meeting(
        Action.write_decision, _json({"value": "Matrice.", "base_version": 0})),
    ("/api/cases/{case_id:int}/decision/sign", "POST"): meeting(
        Action.sign, _json({"password": "not-the-password", "seen_revision": 0})),
    ("/api/cases/{case_id:int}/decision/amend", "POST"): meeting(
        Action.sign, _json({"password": "not-the-password", "reason": "r", "replaces": 1})),
    ("/api/cases/{case_id:int}/decision/versions", "GET"): meeting(Action.view_patient),
    ("/api/cases/{case_id:int}/decision/versions/{number:int}/withdraw", "POST"): meeting(
        Action.sign, _json({"password": "not-the-password", "reason": "r"}), below_case=True),
    ("/api/cases/{case_id:int}/decision/versions/{number:int}/cda", "GET"): meeting(Action.view_patient,
                                                                                    below_case=True),
    ("/cases/{case_id:int}/fiche", "GET"): meeting(Action.view_patient),
    ("/cases/{case_id:int}/fiche.pdf", "GET"): meeting(Action.view_patient),
    ("/meetings/{meeting_id:int}/minutes", "GET"): meeting(Action.view_patient),
    ("/meetings/{meeting_id:int}/minutes.pdf", "GET"): meeting(Action.view_patient),
    ("/meetings/{meeting_id:int}/room", "GET"): meeting(Action.view_patient),
    ("/api/meetings/{meeting_id:int}/attendance", "GET"): meeting(Action.manage_meeting),
    ("/ws/meetings/{meeting_id:int}", "WS"): meeting(Action.enter_room),
}
#: Mounted apps that are not the service's routes (static files are public).
MOUNTS = frozenset({"/static"})


def route_table(app: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            found.append((route.path, "WS"))
        elif isinstance(route, Route):
            found.extend((route.path, m) for m in sorted((route.methods or set()) - {"HEAD"}))
        elif isinstance(route, Mount):
            assert route.path in MOUNTS, f"unclassified mount {route.path}: add it to MOUNTS or ROUTES"
        else:
            raise TypeError(f"unknown kind of route {route!r}")
    return found


def test_every_route_is_classified(settings: Settings) -> None:
    table = route_table(create_app(settings))
    missing = [key for key in table if key not in ROUTES]
    assert not missing, f"routes missing from the access matrix (classify them in ROUTES): {missing}"
    stale = [key for key in ROUTES if key not in table]
    assert not stale, f"ROUTES names routes the app does not have: {stale}"


def test_public_routes_are_the_policys() -> None:
    """The routes anonymous callers reach are the ones the policy lists as public, and no other."""
    public_here = {path for (path, _method), rule in ROUTES.items() if rule.kind == "public"}
    assert public_here == set(access.PUBLIC_ROUTES)


def test_every_room_command_is_classified() -> None:
    classes = {name for name in commands.__all__
               if isinstance(getattr(commands, name), type) and issubclass(getattr(commands, name), commands.Command)
               and name != "Command"}
    assert classes - access.SERVER_COMMANDS == set(access.ROOM_COMMANDS), \
        "room commands missing from rcp.scheduling.access.ROOM_COMMANDS (or stale there)"


# --- the world ----------------------------------------------------------------------------------------------------


def _synthetic(ipp: str) -> SyntheticPatient:
    from datetime import date

    return SyntheticPatient(ipp, HOSPITAL, "Matrice", "Zoé", date(1961, 5, 4), "F")


async def _target(db: Database, settings: Settings, made: MadeMeeting, invited: Any) -> Target:
    """The object's ids; ``invited`` is invited to this meeting (the target invitation is theirs)."""
    case = made.cases[0]
    invitation = await make_invitation(db, made.id, invited)
    archive = open_archive(settings, database=db)
    try:
        blobs = [to_part10(ds) for ds in ct_series(_synthetic(case.patient.ipp), slices=1, rows=16, columns=16)]
        await archive.store(blobs)
        study = (await archive.search_studies(patient_id=case.patient.ipp))[0]
        series = (await archive.list_series(study.study_uid))[0]
        instance = (await archive.list_instances(study.study_uid, series.series_uid))[0]
    finally:
        await archive.close()
    async with db.session() as s:
        row = await s.get(Case, case.id)
        assert row is not None
        row.study_uids = [study.study_uid]
        s.add(row)
        delivery = Delivery(receiver_key="mllp://matrix:2575", receiver_kind="hl7", document_set_id="1.2.3",
                            document_unique_id=f"1.2.3.{secrets.randbelow(10**9)}", case_id=case.id,
                            meeting_id=made.id, patient_id=case.patient.id, status=DeliveryStatus.needs_attention,
                            idempotency_key=secrets.token_hex(8))
        s.add(delivery)
        # A copy mailed to the GP that could not be sent (rcp.minutes.copies): the coordinator may send it again.
        copy = Mail(kind=COPY_MAIL, recipient="dr.matrice@medecin.mssante.fr", case_id=case.id,
                    status=MailStatus.failed, attempts=8)
        s.add(copy)
        await s.flush()
        assert delivery.id is not None and copy.id is not None
        delivery_id, mail_id = delivery.id, copy.id
    return Target(status=made.status, meeting_id=made.id, board_id=made.board.id, case_id=case.id,
                  patient_id=case.patient.id, invitation_id=invitation.id, delivery_id=delivery_id, mail_id=mail_id,
                  study_uid=study.study_uid, series_uid=series.series_uid, sop_uid=instance.sop_uid, made=made)


async def _scoped_session(db: Database, settings: Settings, base_url: str, user_id: int, meeting_id: int) -> Client:
    async with db.session() as s:
        row = LoginSession(id=secrets.token_urlsafe(32), user_id=user_id, csrf_token=secrets.token_urlsafe(32),
                           created_at=utcnow(), last_seen_at=utcnow(), meeting_scope=meeting_id)
        s.add(row)
    http = httpx.AsyncClient(base_url=base_url, timeout=60,
                             cookies={COOKIE_NAME: cookie_signer(settings).dumps(row.id)})
    return Client(http=http, csrf=row.csrf_token, me={"id": user_id})


async def _token_client(db: Database, base_url: str, username: str) -> Client:
    from rcp.auth.models import User

    async with db.session() as s:
        user = (await s.exec(select(User).where(User.username == username))).one()
        token = await create_api_token(s, user, "matrix")
        user_id = user.id
    http = httpx.AsyncClient(base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    return Client(http=http, csrf="", me={"id": user_id})


def _renewers(world: World, settings: Settings, users: dict[str, Any]) -> dict[str, Callable[[], Awaitable[Client]]]:
    def password(name: str) -> Callable[[], Awaitable[Client]]:
        return lambda: sign_in(world.base_url, users[name].username, users[name].password)

    async def guest() -> Client:
        return await _scoped_session(world.db, settings, world.base_url, users["guest"].id,
                                     world.targets["open"].meeting_id)

    async def service() -> Client:
        return await _token_client(world.db, world.base_url, users["service"].username)

    async def anonymous() -> Client:
        return Client(http=httpx.AsyncClient(base_url=world.base_url, timeout=60), csrf="", me={})

    made = {name: password(name) for name in ("admin", "coordinator", "other_coordinator", "invited", "uninvited")}
    return {**made, "guest": guest, "service": service, "anonymous": anonymous}


@pytest.fixture
async def world(db: Database, settings: Settings, live_server: ServerThread) -> Any:
    board_a = await make_board(db)
    board_b = await make_board(db)
    invited = await make_clinician(db, "radiologist")
    guest = await make_user(db, role=Role.guest, specialty="surgeon", password="")
    service = await make_user(db, role=Role.service, password="")
    async with db.session() as s:
        s.add(BoardCoordinator(board_id=board_a.id, user_id=service.id))
    soon = (datetime.now(UTC) + timedelta(days=7)).replace(second=0, microsecond=0)
    made = {
        "open": await make_meeting(db, board=board_a, cases=2, starts_at=soon),
        "closed": await make_meeting(db, board=board_a, cases=2, status=MeetingStatus.closed,
                                     starts_at=soon - timedelta(days=14)),
        "other": await make_meeting(db, board=board_b, cases=2, starts_at=soon),
    }
    targets = {obj: await _target(db, settings, m, invited if obj != "other" else await make_clinician(db))
               for obj, m in made.items()}
    for obj in ("open", "closed"):
        await make_invitation(db, targets[obj].meeting_id, guest)
    users = {"admin": await make_user(db, role=Role.admin), "coordinator": board_a.coordinator,
             "other_coordinator": board_b.coordinator, "invited": invited,
             "uninvited": await make_clinician(db, "surgeon"), "guest": guest, "service": service}
    made_world = World(db=db, base_url=live_server.url, targets=targets)
    made_world.guest_user_id = (await make_clinician(db, "pathologist")).id
    made_world.user_ids = {name: user.id for name, user in users.items()}
    made_world.renew = _renewers(made_world, settings, users)
    made_world.clients = {name: await renew() for name, renew in made_world.renew.items()}
    yield made_world
    for client in made_world.clients.values():
        await client.http.aclose()


# --- expectations -------------------------------------------------------------------------------------------------


def _anonymous_status(path: str) -> int:
    return 401 if path.startswith(("/api/", "/ws/")) else 303


def _board_visible(name: str, obj: str) -> bool:
    board_objects = ("open", "closed") if obj in ("open", "closed") else ("other",)
    return any(STANDINGS[name][o] != Standing.outsider for o in board_objects)


def expected(rule: Rule, name: str, obj: str, world: World, path: str) -> int:
    """The status the policy gives ``name`` on ``obj``; ALLOWED means "not refused"."""
    if rule.kind == "public":
        return ALLOWED
    if name == "anonymous":
        return _anonymous_status(path)
    if rule.kind == "signed":
        return ALLOWED
    if rule.kind == "step_up":
        # A fresh login at a provider before signing: a physician's own session only (403 for a join link or a
        # token); the matrix's app configures no provider, so for everyone else the provider named is not found.
        return 403 if name in ("guest", "service") else 404
    if rule.kind == "role":
        assert rule.action is not None
        return ALLOWED if POLICY_ROLE[name] in access.ROLE_RULES[rule.action] else 403
    if rule.kind == "board_view":
        return ALLOWED if _board_visible(name, obj) or name == "admin" else 404
    if rule.kind == "charter":
        # Asked of the board (access.require_board): not seen, 404; seen, the board table's standing decides.
        if not (_board_visible(name, obj) or name == "admin"):
            return 404
        assert rule.action is not None
        runs = name in ("coordinator", "other_coordinator") and STANDINGS[name][obj] == Standing.coordinator
        standing = Standing.admin if name == "admin" else Standing.coordinator if runs else Standing.participant
        return ALLOWED if standing in access.MEETING_RULES[rule.action][0] else 403
    if rule.kind == "schedule_page":
        return ALLOWED if name in ("admin", "coordinator", "other_coordinator") else 404
    if rule.kind == "board":
        if name == "guest":
            return 403
        if name == "admin":
            return ALLOWED
        if not _board_visible(name, obj):
            # Scheduling on a board one does not see: as for a board that does not exist.
            return 422 if path.startswith("/api/") else REFUSED
        runs = STANDINGS[name][obj] in (Standing.coordinator, Standing.service)
        if path.startswith("/meetings/"):
            # The page answers a refusal with its form again (422: "choose one of your boards") or, for someone
            # who schedules no board at all, "not found".
            return ALLOWED if runs else REFUSED
        return ALLOWED if runs else 403
    standing = STANDINGS[name][obj]
    if rule.kind == "own_invitation":
        if standing == Standing.outsider:
            return 404
        mine = name == "invited"
        manager = standing in (Standing.admin, Standing.coordinator, Standing.service)
        return ALLOWED if mine or manager else 404
    assert rule.kind == "meeting" and rule.action is not None
    return access.decide(standing, rule.action, world.targets[obj].status)


def concrete(path: str, target: Target, fresh: dict[str, int]) -> str:
    values = {"meeting_id": target.meeting_id, "case_id": target.case_id, "patient_id": target.patient_id,
              "invitation_id": target.invitation_id, "board_id": target.board_id, "delivery_id": target.delivery_id,
              "mail_id": target.mail_id,
              "study_uid": target.study_uid, "series_uid": target.series_uid, "sop_uid": target.sop_uid,
              "frame": 1, "name": "comments", "provider": "psc", "number": 1, **fresh}
    out = path
    for key, value in values.items():
        for pattern in (f"{{{key}:int}}", f"{{{key}}}"):
            out = out.replace(pattern, str(value))
    assert "{" not in out, f"no value for a parameter of {path}"
    return out


async def _socket_status(world: World, client: Client, path: str) -> int:
    """The room socket's answer as an HTTP-like status: 200 welcomed, else the close code's status (4404 -> 404)."""
    url = world.base_url.replace("http://", "ws://") + path
    headers: dict[str, str] = {"Origin": world.base_url}
    cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
    if cookie:
        headers["Cookie"] = cookie
    if "authorization" in client.http.headers:
        headers["Authorization"] = client.http.headers["authorization"]
    async with connect(url, additional_headers=headers, open_timeout=20) as socket:
        first = json.loads(await socket.recv())
        if first.get("type") == "welcome":
            return ALLOWED
        return int({"not_authenticated": 401, "forbidden": 403, "not_found": 404, "conflict": 409}.get(first.get("error"), 500))


async def call(world: World, name: str, method: str, path: str, rule: Rule, obj: str) -> tuple[int, str]:
    """The status (and the redirect's target) ``name`` gets for ``method path`` on ``obj``."""
    if rule.ends_session:
        client = await world.renew[name]()
        try:
            return await _call(world, client, method, path, rule, obj)
        finally:
            await client.http.aclose()
    return await _call(world, world.clients[name], method, path, rule, obj)


async def _call(world: World, client: Client, method: str, path: str, rule: Rule, obj: str) -> tuple[int, str]:
    fresh: dict[str, int] = {}
    if rule.fresh == "invitation_id":
        fresh["invitation_id"] = await world.fresh_invitation(obj)
    elif rule.fresh == "case_id":
        fresh["case_id"] = await world.fresh_case(obj)
    elif rule.fresh == "user_id":
        fresh["user_id"] = (await make_clinician(world.db, "surgeon")).id
    url = concrete(path, world.targets[obj], fresh)
    if method == "WS":
        return await _socket_status(world, client, url), ""
    if rule.query:
        url += "?" + rule.query
    kwargs = await rule.body(world, obj)
    response = await client.request(method, url, follow_redirects=False, **kwargs)
    by_policy = False
    if response.headers.get("content-type", "").startswith("application/json") and got_refusal(response):
        by_policy = True
    return response.status_code, response.headers.get("location", "") + (" [policy]" if by_policy else "")


def got_refusal(response: httpx.Response) -> bool:
    """A JSON refusal of the policy itself (not one of the minutes' signature rules after it)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") in {"not_found", "forbidden"} \
        and str(body.get("message", "")).startswith(("No case", "No meeting", "Only the"))


def answers_as_said(rule: Rule, want: int, got: int, location: str) -> bool:
    to_login = got == 303 and location.startswith("/login")
    if got >= 500:
        return False
    if rule.kind == "public":
        return True
    if want == ALLOWED and rule.action == Action.sign:
        # Past the policy's door the minutes' signer rules answer (403 not_allowed_to_sign, 404 no such version).
        return got != 401 and not location.endswith("[policy]")
    if want == ALLOWED and rule.below_case and got == 404:
        return not location.endswith("[policy]")
    if want == ALLOWED:
        return got not in REFUSALS and (not to_login or rule.ends_session)
    if want == REFUSED:
        return got in {403, 404, 422}
    if want == 303:
        return to_login
    return got == want


def _uses_object(path: str, rule: Rule) -> bool:
    return "{" in path or rule.kind in {"board", "board_view", "charter"}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ROLES)
async def test_every_route_answers_the_role_as_the_policy_says(world: World, settings: Settings, name: str) -> None:
    # An unclassified route fails test_every_route_is_classified; here it is left out.
    table = [key for key in route_table(create_app(settings)) if key in ROUTES]
    ordered = sorted(table, key=lambda key: ROUTES[key].ends_session)
    wrong: list[str] = []
    if name:
        for method_path in ordered:
            path, method = method_path
            rule = ROUTES[method_path]
            for obj in OBJECTS if _uses_object(path, rule) else ("open",):
                want = expected(rule, name, obj, world, path)
                # A refusal of the policy is recorded as a security alert naming the caller (finding 12).
                audited = want in {403, 404} and rule.kind not in {"schedule_page", "step_up"}
                before = await world.alerts(name) if audited else 0
                got, location = await call(world, name, method, path, rule, obj)
                if not answers_as_said(rule, want, got, location):
                    wrong.append(f"{name:17} {obj:6} {method:6} {path}: got {got}, policy says "
                                 f"{'allowed' if want == ALLOWED else want}")
                elif audited and await world.alerts(name) <= before:
                    wrong.append(f"{name:17} {obj:6} {method:6} {path}: refused ({got}) without a security alert")
    assert not wrong, "routes that do not answer as the policy says:\n" + "\n".join(wrong)


async def test_only_the_chair_moves_the_room(world: World) -> None:
    """``chair room``: a coordinator of another board sitting in the meeting does not chair it."""
    target = world.targets["open"]
    visitor = await make_coordinator(world.db)
    await make_invitation(world.db, target.meeting_id, visitor)
    sitting = await sign_in(world.base_url, visitor.username, visitor.password)
    url = world.base_url.replace("http://", "ws://") + f"/ws/meetings/{target.meeting_id}"
    try:
        for client, may in ((world.clients["invited"], False), (sitting, False), (world.clients["coordinator"], True)):
            cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
            async with connect(url, additional_headers={"Cookie": cookie, "Origin": world.base_url},
                                          open_timeout=20) as socket:
                assert json.loads(await socket.recv())["type"] == "welcome"
                await socket.send(json.dumps({"type": "case.set", "case_id": target.case_id, "id": "m"}))
                while True:
                    frame = json.loads(await socket.recv())
                    if frame.get("type") == "error" and frame.get("ref") == "m":
                        assert not may and frame["error"] == "forbidden", frame
                        break
                    if frame.get("type") == "event" and frame.get("event") == "case.changed":
                        assert may, frame
                        break
    finally:
        await sitting.http.aclose()
