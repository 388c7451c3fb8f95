"""Sign-in after the password: the second factor, its enrolment, and a password change an administrator asked for.

A session is opened only once every step is done, so an account that still has to enrol its authenticator (or to
change a reset password) can do nothing else meanwhile: until then the browser holds only a *pending* cookie,
signed and short-lived (:data:`PENDING_MAX_AGE_S`), confined to ``/login``, that names the account and what it has
proved so far. It carries a fingerprint of the account's password hash and flags, so a password reset, a
deactivation or a relaxed second factor voids it; and its own CSRF token, which the forms send back.

    /login (password) ─┬─ second factor relaxed ───────────────────────────┐
                       ├─ authenticator active ──> /login/code ────────────┤
                       └─ not enrolled yet ──────> /login/enrol (QR) ──────┤
                                                      (recovery codes)      ├─ must change password ─> /login/password
                                                                            └─ session opened, on to ``next``
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp.auth import audit
from rcp.auth.models import User
from rcp.auth.passwords import MIN_PASSWORD_LENGTH, Argon2Cost, hash_password, verify_password
from rcp.auth.sessions import COOKIE_NAME, cookie_signer, open_session
from rcp.auth.throttle import Throttled, password_throttle
from rcp.auth.totp import (
    AccountActor,
    SecondFactorRefused,
    UnreadableSecret,
    begin_enrolment,
    box_for,
    check_second_factor,
    confirm_enrolment,
    digest_of,
    enrolment_state,
    provisioning_uri,
    qr_data_uri,
)
from rcp.config import Settings
from rcp.i18n import N_
from rcp.i18n import gettext as _
from rcp.metrics import LOGIN_FAILURES
from rcp.templating import render

__all__ = ["PENDING_COOKIE", "after_password", "password_problem", "routes", "store_new_password"]

logger = logging.getLogger(__name__)

PENDING_COOKIE = "rcp_login_pending"
#: Long enough to fetch the phone and scan a QR code; a pending sign-in older than this starts again.
PENDING_MAX_AGE_S = 600

WRONG_CODE = N_("Wrong or already used code: enter the code your authenticator shows now, or a recovery code.")
THROTTLED_CODE = N_("Too many wrong codes: wait a moment, then try again.")
UNREADABLE = N_("Your second factor can no longer be read (the service's key changed): ask an administrator to "
                "reset it, then enrol again.")


@dataclass(frozen=True)
class Pending:
    user_id: int
    fingerprint: str
    #: The second factor is proved (or relaxed): only the password change may remain.
    second_factor: bool
    next: str
    csrf: str


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="rcp.login.pending")


def fingerprint(user: User) -> str:
    """Changes whenever what the pending sign-in relied on changes (password, activity, second-factor rule)."""
    return digest_of(f"{user.password_hash}|{user.active}|{user.second_factor_required}|{user.must_change_password}")


def _secure(request: Request) -> bool:
    return _settings(request).tls or request.url.scheme == "https"


def _with_pending(request: Request, response: Response, user: User, *, second_factor: bool, next_url: str) -> Response:
    assert user.id is not None
    payload = {"u": user.id, "f": fingerprint(user), "m": second_factor, "n": next_url,
               "c": secrets.token_urlsafe(24)}
    response.set_cookie(PENDING_COOKIE, _signer(_settings(request)).dumps(payload), max_age=PENDING_MAX_AGE_S,
                        httponly=True, samesite="strict", secure=_secure(request), path="/login")
    return response


async def _pending(request: Request) -> tuple[Pending, User] | None:
    """The pending sign-in of this browser, if still valid."""
    raw = request.cookies.get(PENDING_COOKIE, "")
    if not raw:
        return None
    try:
        data = _signer(_settings(request)).loads(raw, max_age=PENDING_MAX_AGE_S)
        pending = Pending(user_id=int(data["u"]), fingerprint=str(data["f"]), second_factor=bool(data["m"]),
                          next=str(data["n"]), csrf=str(data["c"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    async with request.app.state.db.session() as s:
        user = await s.get(User, pending.user_id)
    if user is None or not user.active or not hmac.compare_digest(fingerprint(user), pending.fingerprint):
        return None
    return pending, user


def _restart(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(PENDING_COOKIE, path="/login")
    return response


def _form_ok(pending: Pending, form: Any) -> bool:
    return hmac.compare_digest(str(form.get("pending_csrf", "")), pending.csrf)


async def after_password(request: Request, session: AsyncSession, user: User, next_url: str) -> Response:
    """Where sign-in goes once the password is right (called by the ``/login`` form)."""
    assert user.id is not None
    if not user.second_factor_required:
        return await _finish(request, session, user, next_url=next_url, how="password; second factor relaxed")
    state = await enrolment_state(session, user.id)
    target = "/login/code" if state == "active" else "/login/enrol"
    return _with_pending(request, RedirectResponse(target, status_code=303), user, second_factor=False,
                         next_url=next_url)


async def _finish(request: Request, session: AsyncSession, user: User, *, next_url: str, how: str,
                  response: Response | None = None) -> Response:
    """Every factor proved: the password change if one is due, else the session (and on to ``next_url``)."""
    if user.must_change_password:
        target = response or RedirectResponse("/login/password", status_code=303)
        return _with_pending(request, target, user, second_factor=True, next_url=next_url)
    row = await open_session(session, _settings(request), user, source=audit.source_of(request), how=how)
    target = response or RedirectResponse(next_url, status_code=303)
    target.set_cookie(COOKIE_NAME, cookie_signer(_settings(request)).dumps(row.id), httponly=True, samesite="lax",
                      secure=_secure(request), path="/")
    target.delete_cookie(PENDING_COOKIE, path="/login")
    return target


# --- the code -------------------------------------------------------------------------------------------------


def _code_page(request: Request, pending: Pending, error: str = "", status: int = 200) -> Response:
    return render(request, "login_code.html", {"pending_csrf": pending.csrf, "error": error}, status=status)


async def code_page(request: Request) -> Response:
    loaded = await _pending(request)
    if loaded is None or loaded[0].second_factor:
        return _restart(request)
    return _code_page(request, loaded[0])


async def code_submit(request: Request) -> Response:
    form = await request.form()
    loaded = await _pending(request)
    if loaded is None or loaded[0].second_factor or not _form_ok(loaded[0], form):
        return _restart(request)
    pending, user = loaded
    settings = _settings(request)
    try:
        async with request.app.state.db.session() as s:
            row = await s.get(User, user.id)
            assert row is not None
            proof = await check_second_factor(
                s, box=box_for(settings), user=row, code=str(form.get("code", ""))[:40], at=settings.clock.now(),
                step_s=settings.totp_step_s, cost=settings.argon2, throttle=password_throttle(request.app.state),
                conn=request, source=audit.source_of(request), act="login")
            return await _finish(request, s, row, next_url=pending.next, how=f"password and {proof.kind}")
    except SecondFactorRefused:
        LOGIN_FAILURES.labels(reason="second_factor").inc()
        return _code_page(request, pending, _(WRONG_CODE), 401)
    except UnreadableSecret:
        logger.warning("user %s: TOTP secret unreadable (secret key changed?)", user.id)
        return _code_page(request, pending, _(UNREADABLE), 409)
    except Throttled as throttled:
        response = _code_page(request, pending, _(THROTTLED_CODE), 429)
        response.headers["Retry-After"] = str(throttled.retry_after_s)
        return response


# --- enrolment ------------------------------------------------------------------------------------------------


async def _enrol_page(request: Request, pending: Pending, user: User, error: str = "", status: int = 200) -> Response:
    settings = _settings(request)
    assert user.id is not None
    async with request.app.state.db.session() as s:
        secret = await begin_enrolment(s, box_for(settings), user.id)
    uri = provisioning_uri(secret, account=user.username, public_url=settings.public_url,
                           step_s=settings.totp_step_s)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render(request, "login_enrol.html", {"pending_csrf": pending.csrf, "error": error, "qr": qr_data_uri(uri),
                                                 "secret": grouped, "step_s": settings.totp_step_s}, status=status)


async def enrol_page(request: Request) -> Response:
    loaded = await _pending(request)
    if loaded is None or loaded[0].second_factor:
        return _restart(request)
    pending, user = loaded
    assert user.id is not None
    async with request.app.state.db.session() as s:
        if await enrolment_state(s, user.id) == "active":
            return RedirectResponse("/login/code", status_code=303)
    return await _enrol_page(request, pending, user)


async def enrol_submit(request: Request) -> Response:
    form = await request.form()
    loaded = await _pending(request)
    if loaded is None or loaded[0].second_factor or not _form_ok(loaded[0], form):
        return _restart(request)
    pending, user = loaded
    assert user.id is not None
    settings = _settings(request)
    throttle = password_throttle(request.app.state)
    key = f"second-factor:user:{user.id}"
    try:
        await throttle.begin(key)
    except Throttled as throttled:
        response = await _enrol_page(request, pending, user, _(THROTTLED_CODE), 429)
        response.headers["Retry-After"] = str(throttled.retry_after_s)
        return response
    async with request.app.state.db.session() as s:
        codes = await confirm_enrolment(s, box_for(settings), user.id, str(form.get("code", ""))[:40],
                                        at=settings.clock.now(), step_s=settings.totp_step_s, cost=settings.argon2)
        if codes is None:
            await audit.record(s, event="user_authentication", action="E", outcome=4, request=request,
                               user=AccountActor(user), what="second-factor enrolment: wrong confirmation code")
    if codes is None:
        return await _enrol_page(request, pending, user, _(WRONG_CODE), 401)
    await throttle.succeeded(key)
    async with request.app.state.db.session() as s:
        row = await s.get(User, user.id)
        assert row is not None
        await audit.record(s, event="security_attributes_changed", action="C", request=request, user=AccountActor(row),
                           what=f"user {user.id}: authenticator enrolled, {len(codes)} recovery codes issued")
        page = render(request, "login_recovery.html", {
            "codes": codes, "next": "/login/password" if row.must_change_password else pending.next})
        return await _finish(request, s, row, next_url=pending.next, how="password and TOTP (enrolment)",
                             response=page)


# --- password change at sign-in -----------------------------------------------------------------------------------


async def store_new_password(session: AsyncSession, user_id: int, password: str, cost: Argon2Cost) -> User:
    """Make ``password`` the account's own (argon2 in the thread pool, before anything is read in ``session``, so
    no transaction waits on the hash) and lift an administrator's "change it at the next sign-in". Shared by the
    forced change after a reset and the owner's change with the current password; the caller audits and decides
    which sessions end."""
    digest = await run_in_threadpool(hash_password, password, cost)
    row = await session.get(User, user_id)
    assert row is not None
    row.password_hash = digest
    row.must_change_password = False
    session.add(row)
    return row


def password_problem(new: str, repeated: str, *, username: str) -> str:
    """What is wrong with a new password (untranslated message id), or ``""``: the project's policy (at least
    :data:`MIN_PASSWORD_LENGTH` characters, typed twice alike, not the user name)."""
    if len(new) < MIN_PASSWORD_LENGTH:
        return N_("The new password must have at least 10 characters.")
    if new != repeated:
        return N_("The two new passwords differ.")
    if new.strip().lower() == username.strip().lower():
        return N_("The new password must not be your user name.")
    return ""


def _password_page(request: Request, pending: Pending, error: str = "", status: int = 200) -> Response:
    return render(request, "login_password.html", {"pending_csrf": pending.csrf, "error": error}, status=status)


async def password_page(request: Request) -> Response:
    loaded = await _pending(request)
    if loaded is None or not loaded[0].second_factor or not loaded[1].must_change_password:
        return _restart(request)
    return _password_page(request, loaded[0])


async def password_submit(request: Request) -> Response:
    form = await request.form()
    loaded = await _pending(request)
    if loaded is None or not loaded[0].second_factor or not loaded[1].must_change_password \
            or not _form_ok(loaded[0], form):
        return _restart(request)
    pending, user = loaded
    new, repeated = str(form.get("new_password", ""))[:1000], str(form.get("new_password2", ""))[:1000]
    problem = password_problem(new, repeated, username=user.username)
    settings = _settings(request)
    if not problem and await run_in_threadpool(verify_password, user.password_hash, new, settings.argon2):
        problem = N_("Choose a password other than the one you were given.")
    if problem:
        return _password_page(request, pending, _(problem), 422)
    assert user.id is not None
    async with request.app.state.db.session() as s:
        row = await store_new_password(s, user.id, new, settings.argon2)
        await audit.record(s, event="security_attributes_changed", action="U", request=request, user=AccountActor(row),
                           what=f"user {user.id}: password changed at sign-in (after a reset)")
        return await _finish(request, s, row, next_url=pending.next, how="password and second factor")


routes: list[BaseRoute] = [
    Route("/login/code", code_page, methods=["GET"], name="login_code"),
    Route("/login/code", code_submit, methods=["POST"]),
    Route("/login/enrol", enrol_page, methods=["GET"], name="login_enrol"),
    Route("/login/enrol", enrol_submit, methods=["POST"]),
    Route("/login/password", password_page, methods=["GET"], name="login_password"),
    Route("/login/password", password_submit, methods=["POST"]),
]
