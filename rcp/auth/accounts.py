"""Account administration pages (administrators) and the password change of the signed-in user.

Until issue 17 accounts were made only from the command line (``rcp user add``). Administrators now list, create
and change accounts here: role, specialty, hospital, e-mail, name; deactivate them; reset a password (the person
chooses a new one at the next sign-in: rcp.auth.login_steps) or a second factor (they enrol again); relax the
second factor of an account that never signs (it then cannot sign: rcp.auth.reauth). Everyone changes their own
password with their current one.

Rules:

- every page asks the one access policy (``rcp.scheduling.access``, action ``manage accounts``: administrators);
- every change is audited with the DICOM codes of PS3.15 A.5: DCM 110136 Security Roles Changed (an account
  created, its role changed, deactivated or reactivated), DCM 110137 Security Attributes Changed (password, second
  factor, e-mail, specialty, name...), DCM 110114 User Authentication for a refused current password;
- the last active administrator can be neither deactivated nor given another role (nobody could administer);
- a deactivation, a role change or a reset ends the account's sessions at once (and its room sockets, on every
  node: rcp.http.revoke);
- passwords are hashed with argon2id in the thread pool, and follow the project's policy
  (:func:`rcp.auth.login_steps.password_problem`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

from sqlmodel import col, delete, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp.auth import audit
from rcp.auth.login_steps import password_problem, store_new_password
from rcp.auth.models import LoginSession, Role, TotpCredential, User
from rcp.auth.passwords import hash_password, verify_password
from rcp.auth.throttle import Throttled, password_throttle
from rcp.auth.totp import reset_second_factor
from rcp.config import Settings
from rcp.errors import Conflict, Invalid, NotFound
from rcp.http import current_user, path_int, revoke
from rcp.i18n import N_
from rcp.i18n import gettext as _
from rcp.people import PersonName, check_rpps
from rcp.templating import render

__all__ = ["routes", "temporary_password"]

#: Roles an administrator gives here; guests are made by a coordinator's invitation (rcp.auth.links).
ROLES = (Role.clinician, Role.coordinator, Role.admin, Role.service)
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,79}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TEMPORARY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"

LAST_ADMIN = N_("This is the last active administrator: give another account the administrator role first.")


def temporary_password() -> str:
    """A password to hand over once (16 characters, ~80 bits); the person replaces it at the next sign-in."""
    chars = "".join(secrets.choice(_TEMPORARY_ALPHABET) for _ in range(16))
    return "-".join(chars[i:i + 4] for i in range(0, 16, 4))


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _require_admin(request: Request) -> Any:
    from rcp.scheduling import access

    user = current_user(request)
    access.require(user, access.Action.manage_accounts)
    return user


@dataclass(frozen=True)
class AccountForm:
    """What the create/edit form sends, checked field by field (errors: field -> untranslated message)."""

    username: str
    family_name: str
    given_name: str
    prefix: str
    rpps: str
    role: str
    specialty: str
    hospital: str
    email: str
    active: bool
    second_factor_required: bool

    @classmethod
    def read(cls, form: Any) -> AccountForm:
        def text(name: str, limit: int) -> str:
            return str(form.get(name, "")).strip()[:limit]
        return cls(username=text("username", 80).lower(), family_name=text("family_name", 100),
                   given_name=text("given_name", 100), prefix=text("prefix", 10), rpps=text("rpps", 20),
                   role=text("role", 20), specialty=text("specialty", 40), hospital=text("hospital", 200),
                   email=text("email", 200), active=form.get("active") == "on",
                   second_factor_required=form.get("second_factor_required") == "on")

    def checked(self) -> AccountForm:
        """The name parts tidied (``rcp.people``: "Docteur" → "Dr") and the RPPS without spaces, when valid."""
        try:
            name = PersonName.of(family=self.family_name, given=self.given_name, prefix=self.prefix)
            family, given, prefix = name.family, name.given, name.prefix
        except Invalid:
            family, given, prefix = self.family_name, self.given_name, self.prefix
        try:
            rpps = check_rpps(self.rpps)
        except Invalid:
            rpps = self.rpps
        return replace(self, family_name=family, given_name=given, prefix=prefix, rpps=rpps)

    def errors(self, *, new: bool) -> dict[str, str]:
        from rcp.scheduling.specialties import SPECIALTIES

        found: dict[str, str] = {}
        if new and not _USERNAME.fullmatch(self.username):
            found["username"] = N_("2 to 80 characters: lower-case letters, digits, dot, dash, underscore.")
        # A person is named in parts (rcp.people); a service account may go by its user name alone.
        if self.family_name or self.given_name or self.role != Role.service:
            try:
                PersonName.of(family=self.family_name, given=self.given_name, prefix=self.prefix)
            except Invalid as exc:
                found.update(exc.fields)
        try:
            check_rpps(self.rpps)
        except Invalid as exc:
            found.update(exc.fields)
        if self.role not in ROLES:
            found["role"] = N_("Choose a role.")
        if self.specialty and self.specialty not in {s.key for s in SPECIALTIES}:
            found["specialty"] = N_("Choose a specialty from the list.")
        if self.email and not _EMAIL.fullmatch(self.email):
            found["email"] = N_("Enter an e-mail address such as name@chu-x.fr.")
        return found


async def _end_sessions(request: Request, session: AsyncSession, user_id: int, *, keep: str = "") -> None:
    """The account's sessions end now (all but ``keep``); the room sockets follow after the commit."""
    statement = delete(LoginSession).where(col(LoginSession.user_id) == user_id)
    if keep:
        statement = statement.where(col(LoginSession.id) != keep)
    await session.exec(statement)


async def _other_active_admins(session: AsyncSession, user_id: int) -> int:
    return int((await session.exec(select(func.count()).select_from(User).where(
        User.role == Role.admin, col(User.active).is_(True), User.id != user_id))).one())


async def _record(session: AsyncSession, request: Request, *, event: str, action: str, what: str) -> None:
    await audit.record(session, event=event, action=action, request=request, what=what)


# --- the list -----------------------------------------------------------------------------------------------------


async def users_page(request: Request) -> Response:
    _require_admin(request)
    async with request.app.state.db.session() as s:
        users = (await s.exec(select(User).where(User.role != Role.guest).order_by(col(User.username)))).all()
        enrolled = set((await s.exec(select(TotpCredential.user_id).where(
            col(TotpCredential.confirmed_at).is_not(None)))).all())
    return render(request, "admin/users.html", {"users": users, "enrolled": enrolled})


# --- create -------------------------------------------------------------------------------------------------------


def _form_page(request: Request, *, account: User | None, form: AccountForm | None, errors: dict[str, str],
               status: int = 200, notice: str = "", enrolled: bool = False) -> Response:
    from rcp.scheduling.specialties import SPECIALTIES

    fields = ("username", "family_name", "given_name", "prefix", "rpps", "role", "specialty", "hospital", "email",
              "active", "second_factor_required")
    source: Any = form if form is not None else account
    values = {name: getattr(source, name) for name in fields} if source is not None else {
        "role": Role.clinician, "active": True, "second_factor_required": True}
    return render(request, "admin/user_form.html", {
        "account": account, "values": values, "errors": {k: _(v) for k, v in errors.items()}, "roles": ROLES,
        "specialties": SPECIALTIES, "notice": notice, "enrolled": enrolled}, status=status)


async def new_page(request: Request) -> Response:
    _require_admin(request)
    return _form_page(request, account=None, form=None, errors={})


async def new_submit(request: Request) -> Response:
    _require_admin(request)
    form = AccountForm.read(await request.form())
    errors = form.errors(new=True)
    form = form.checked()
    async with request.app.state.db.session() as s:
        if not errors and (await s.exec(select(User.id).where(User.username == form.username))).first() is not None:
            errors["username"] = N_("This user name is taken.")
        if errors:
            return _form_page(request, account=None, form=form, errors=errors, status=422)
        password = temporary_password() if form.role != Role.service else ""
        digest = await run_in_threadpool(hash_password, password, _settings(request).argon2) if password else ""
        row = User(username=form.username, family_name=form.family_name, given_name=form.given_name,
                   prefix=form.prefix, rpps=form.rpps, role=form.role, specialty=form.specialty, hospital=form.hospital, email=form.email, password_hash=digest,
                   active=True, second_factor_required=form.second_factor_required,
                   must_change_password=bool(password))
        s.add(row)
        await s.flush()
        await _record(s, request, event="security_roles_changed", action="C",
                      what=f"user {row.id} created with role {form.role}")
    return render(request, "admin/password_shown.html", {"account": row, "password": password, "created": True})


# --- change -------------------------------------------------------------------------------------------------------


async def _load(s: AsyncSession, user_id: int) -> User:
    row = await s.get(User, user_id)
    if row is None or row.role == Role.guest:
        raise NotFound(f"No account {user_id} (guests are managed from their meeting's invitations).")
    return row


async def user_page(request: Request) -> Response:
    _require_admin(request)
    user_id = path_int(request, "user_id")
    async with request.app.state.db.session() as s:
        row = await _load(s, user_id)
        enrolled = await s.get(TotpCredential, user_id)
    return _form_page(request, account=row, form=None, errors={},
                      enrolled=enrolled is not None and enrolled.confirmed_at is not None)


#: What the form sets besides the role and the activity (audited by name, as 110137).
_ATTRIBUTES = ("family_name", "given_name", "prefix", "rpps", "specialty", "hospital", "email",
               "second_factor_required")


def _changes(row: User, form: AccountForm) -> tuple[list[str], list[str]]:
    """What the form changes: (role/activity changes, other attributes), as audit words (never the values of
    personal attributes, only their names)."""
    roles: list[str] = []
    if form.role != row.role:
        roles.append(f"role {row.role} -> {form.role}")
    if form.active != row.active:
        roles.append("reactivated" if form.active else "deactivated")
    attributes = [name for name in _ATTRIBUTES if getattr(form, name) != getattr(row, name)]
    return roles, attributes


async def user_submit(request: Request) -> Response:
    me = _require_admin(request)
    user_id = path_int(request, "user_id")
    form = AccountForm.read(await request.form())
    async with request.app.state.db.session() as s:
        row = await _load(s, user_id)
        form = replace(form, username=row.username)
        errors = form.errors(new=False)
        if errors:
            return _form_page(request, account=row, form=form, errors=errors, status=422)
        losing_admin = row.role == Role.admin and row.active and (form.role != Role.admin or not form.active)
        if losing_admin and await _other_active_admins(s, user_id) == 0:
            raise Conflict(_(LAST_ADMIN), fields={"role": "last active administrator"})
        form = form.checked()
        roles, attributes = _changes(row, form)
        for name in ("role", "active", *_ATTRIBUTES):
            setattr(row, name, getattr(form, name))
        row.name_to_check = False  # the administrator gave the name in parts
        s.add(row)
        if roles:
            await _record(s, request, event="security_roles_changed", action="U",
                          what=f"user {user_id}: {', '.join(roles)}")
        if attributes:
            await _record(s, request, event="security_attributes_changed", action="U",
                          what=f"user {user_id}: {', '.join(attributes)} changed")
        if roles:
            await _end_sessions(request, s, user_id, keep=me.session_id if user_id == me.id else "")
    if roles:
        await revoke(request, user_id=user_id)
    return RedirectResponse(f"/admin/users/{user_id}?saved=1", status_code=303)


async def reset_password(request: Request) -> Response:
    """A temporary password, shown once to the administrator; the person chooses their own at the next sign-in."""
    _require_admin(request)
    user_id = path_int(request, "user_id")
    password = temporary_password()
    digest = await run_in_threadpool(hash_password, password, _settings(request).argon2)
    async with request.app.state.db.session() as s:
        row = await _load(s, user_id)
        if row.role == Role.service:
            raise Conflict("A service account signs in with bearer tokens (rcp token create), not a password.")
        row.password_hash = digest
        row.must_change_password = True
        s.add(row)
        await _end_sessions(request, s, user_id)
        await _record(s, request, event="security_attributes_changed", action="U",
                      what=f"user {user_id}: password reset by an administrator (to change at next sign-in)")
    await revoke(request, user_id=user_id)
    return render(request, "admin/password_shown.html", {"account": row, "password": password, "created": False})


async def reset_factor(request: Request) -> Response:
    """Forget the account's authenticator and recovery codes: it enrols again at its next sign-in."""
    _require_admin(request)
    user_id = path_int(request, "user_id")
    async with request.app.state.db.session() as s:
        await _load(s, user_id)
        await reset_second_factor(s, user_id)
        await _end_sessions(request, s, user_id)
        await _record(s, request, event="security_attributes_changed", action="D",
                      what=f"user {user_id}: second factor reset by an administrator (to enrol at next sign-in)")
    await revoke(request, user_id=user_id)
    return RedirectResponse(f"/admin/users/{user_id}?factor_reset=1", status_code=303)


# --- the user's own password ------------------------------------------------------------------------------------


def _own_page(request: Request, *, errors: dict[str, str] | None = None, done: bool = False,
              status: int = 200) -> Response:
    return render(request, "account/password.html", {"errors": {k: _(v) for k, v in (errors or {}).items()},
                                                      "done": done}, status=status)


async def own_password_page(request: Request) -> Response:
    current_user(request)
    return _own_page(request, done=request.query_params.get("done") == "1")


async def own_password_submit(request: Request) -> Response:
    """The signed-in person's new password, given their current one (throttled like every password check)."""
    user = current_user(request)
    form = await request.form()
    current = str(form.get("current_password", ""))[:1000]
    new, repeated = str(form.get("new_password", ""))[:1000], str(form.get("new_password2", ""))[:1000]
    settings = _settings(request)
    problem = password_problem(new, repeated, username=user.username)
    if problem:
        return _own_page(request, errors={"new_password": problem}, status=422)
    if user.is_guest or user.via != "session":
        raise Conflict("A guest's session or a service token has no password to change: guests enter by their "
                       "link, service accounts by their bearer token.")
    throttle = password_throttle(request.app.state)
    key = f"reauth:user:{user.id}"
    try:
        await throttle.begin(key)
    except Throttled as throttled:
        response = _own_page(request, errors={"current_password": N_(
            "Too many failed sign-ins: wait a moment, then try again.")}, status=429)
        response.headers["Retry-After"] = str(throttled.retry_after_s)
        return response
    async with request.app.state.db.session() as s:
        row = await s.get(User, user.id)
        digest = row.password_hash if row is not None else ""
    if not await run_in_threadpool(verify_password, digest, current, settings.argon2):
        async with request.app.state.db.session() as s:
            await audit.record(s, event="user_authentication", action="E", outcome=4, request=request,
                               what="password change: current password wrong")
        return _own_page(request, errors={"current_password": N_("This is not your current password.")}, status=403)
    await throttle.succeeded(key)
    if new == current:
        return _own_page(request, errors={"new_password": N_("Choose a password other than the one you were given.")},
                         status=422)
    async with request.app.state.db.session() as s:
        await store_new_password(s, user.id, new, settings.argon2)
        # Other browsers signed in with the old password are signed out; this one stays.
        await _end_sessions(request, s, user.id, keep=user.session_id)
        await audit.record(s, event="security_attributes_changed", action="U", request=request,
                           what=f"user {user.id}: password changed by its owner")
    return RedirectResponse("/account/password?done=1", status_code=303)


routes: list[BaseRoute] = [
    Route("/admin/users", users_page, methods=["GET"], name="admin_users"),
    Route("/admin/users/new", new_page, methods=["GET"], name="admin_user_new"),
    Route("/admin/users/new", new_submit, methods=["POST"]),
    Route("/admin/users/{user_id:int}", user_page, methods=["GET"], name="admin_user"),
    Route("/admin/users/{user_id:int}", user_submit, methods=["POST"]),
    Route("/admin/users/{user_id:int}/password", reset_password, methods=["POST"]),
    Route("/admin/users/{user_id:int}/second-factor", reset_factor, methods=["POST"]),
    Route("/account/password", own_password_page, methods=["GET"], name="account_password"),
    Route("/account/password", own_password_submit, methods=["POST"]),
]
