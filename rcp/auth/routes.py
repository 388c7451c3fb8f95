"""Sign in and out (pages and API), the caller's own profile, people lookup, and the audit export."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp.auth import audit
from rcp.auth.login_steps import after_password
from rcp.auth.models import AuditEvent, User
from rcp.auth.sessions import (
    COOKIE_NAME,
    THROTTLED_MESSAGE,
    LoginRefused,
    check_password,
    cookie_signer,
    end_session,
    open_session,
)
from rcp.auth.throttle import Throttled, password_throttle
from rcp.auth.totp import SecondFactorRefused, UnreadableSecret, box_for, check_second_factor, enrolment_state
from rcp.config import Settings
from rcp.db import Database
from rcp.errors import BadRequest, Conflict, Forbidden, NotAuthenticated
from rcp.http import current_user, json_out, read_json, revoke
from rcp.i18n import LOCALE_COOKIE, LOCALES, N_
from rcp.i18n import gettext as _
from rcp.openapi import ApiRoute
from rcp.scheduling.service import users_for_invitation
from rcp.templating import render

__all__ = ["routes"]

LOGIN_CSRF_COOKIE = "rcp_login_csrf"
#: Signing out of a shared workstation leaves nothing of this site in the browser (W3C Clear Site Data): its cache,
#: cookies and storage go with the session (browsers honour it over https and on localhost).
CLEAR_SITE_DATA = '"cache", "cookies", "storage"'


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=80)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]
    #: The second factor (rcp.auth.totp): the authenticator's current code, or one of the recovery codes. Required
    #: unless an administrator relaxed it for the account; an account not enrolled yet enrols on the sign-in page.
    code: Annotated[str, Field(max_length=40)] = ""


class SecondFactorNeeded(NotAuthenticated):
    code = "second_factor_required"


class SignInIncomplete(Forbidden):
    """The password is right but a sign-in step is still due in the browser (enrolment, password change)."""

    code = "sign_in_incomplete"


class Me(BaseModel):
    id: int
    username: str
    #: "Dr Amélie ROUSSEAU" (rcp.people.PersonName.display), from the parts below.
    display_name: str
    #: The name in its parts (issue 14, item 4: one source of truth per user), as ``Person`` gives them.
    family_name: str = ""
    given_name: str = ""
    prefix: str = ""
    #: RPPS number when known, else "".
    rpps: str = ""
    #: The name is flagged "to check" or missing: to complete before signing.
    name_to_complete: bool = False
    role: str
    specialty: str
    hospital: str
    locale: str
    #: Send it back as X-CSRF-Token on every unsafe request made with the session cookie.
    csrf_token: str
    #: An external physician in through a join link: one meeting, never a signer.
    is_guest: bool = False


class Person(BaseModel):
    id: int
    #: "Dr Amélie ROUSSEAU" (rcp.people.PersonName.display), from the parts below.
    display_name: str
    family_name: str
    given_name: str
    prefix: str
    #: The name was kept whole because it could not be split (migration 0013): to complete before signing.
    name_to_complete: bool
    role: str
    specialty: str
    hospital: str


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _secure(request: Request) -> bool:
    """Secure cookies whenever browsers reach us over TLS (``RCP_PUBLIC_URL`` is https, or this request is)."""
    return _settings(request).tls or request.url.scheme == "https"


def _safe_next(target: str) -> str:
    """Only same-site paths after login: an open redirect would let a phishing link borrow our login page."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/meetings"
    return target


def _set_session_cookie(request: Request, response: Response, session_id: str) -> None:
    # No Max-Age/Expires: a session cookie, gone when the browser closes, so a shared workstation does not keep a
    # signed-in session (issue 13, finding 10). The server ends the session anyway after idle/absolute limits.
    response.set_cookie(
        COOKIE_NAME,
        cookie_signer(_settings(request)).dumps(session_id),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def _me(user: Any, row: User | None) -> Me:
    """The caller (``CurrentUser``) with its name parts from its account ``row`` (None: only the display name)."""
    parts: dict[str, Any] = {}
    if row is not None:
        parts = {"family_name": row.family_name, "given_name": row.given_name, "prefix": row.prefix,
                 "rpps": row.rpps, "name_to_complete": row.name_incomplete}
    return Me(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
              specialty=user.specialty, hospital=user.hospital, locale=user.locale, csrf_token=user.csrf_token,
              is_guest=user.is_guest, **parts)


#: The sign-in page's answer to a password when ``RCP_LOCAL_PASSWORDS=off``.
LOCAL_PASSWORDS_OFF = N_("Sign-in with a password is switched off on this service: use your identity provider.")


def _signin_options(request: Request) -> dict[str, Any]:
    """The providers first, then the password form unless an administrator switched local passwords off."""
    settings = _settings(request)
    return {"providers": [{"name": p.name, "label": p.label} for p in settings.oidc_providers],
            "local_passwords": settings.local_passwords}


async def _refuse_local_password(request: Request) -> None:
    """Local passwords are off: the attempt is refused before anything is checked, and audited."""
    async with request.app.state.db.session() as s:
        await audit.record(s, event="user_authentication", action="E", outcome=4, request=request, user=None,
                           what="login refused: local passwords are switched off")


async def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", {"login_csrf": token, "next": _safe_next(request.query_params.get("next", "")),
                                              "error": "", "username": "", **_signin_options(request)})
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=_secure(request), path="/login")
    return response


async def login_submit(request: Request) -> Response:
    form = await request.form()
    username = str(form.get("username", ""))[:80]
    password = str(form.get("password", ""))[:1000]
    next_url = _safe_next(str(form.get("next", "")))
    submitted = str(form.get("login_csrf", ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    db: Database = request.app.state.db

    def again(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", {"login_csrf": token, "next": next_url, "error": message,
                                                  "username": username, **_signin_options(request)},
                          status=status)
        response.headers.update(headers or {})
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                            secure=_secure(request), path="/login")
        return response

    if not _settings(request).local_passwords:
        await _refuse_local_password(request)
        return again(_(LOCAL_PASSWORDS_OFF), 403)
    if not expected or not hmac.compare_digest(submitted, expected):
        return again(_("This sign-in form has expired; please try again."), 403)
    try:
        async with db.session() as s:
            user = await check_password(s, _settings(request), username=username, password=password,
                                        source=audit.source_of(request), throttle=password_throttle(request.app.state))
            # The second factor, its enrolment, a password change: rcp.auth.login_steps.
            response = await after_password(request, s, user, next_url)
    except LoginRefused as refused:
        # The failed attempt was audited in its own transaction: commit it even though sign-in failed.
        return again(_(refused.message), 401)
    except Throttled as throttled:
        return again(_(THROTTLED_MESSAGE), 429, {"Retry-After": str(throttled.retry_after_s)})
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _forget_session(request: Request) -> None:
    """This node stops trusting the cookie at once (the authentication backend caches sessions briefly)."""
    cookie = request.cookies.get(COOKIE_NAME)
    backend = getattr(request.app.state, "auth_backend", None)
    if cookie and backend is not None:
        backend.forget("cookie:" + cookie)


async def logout(request: Request) -> Response:
    from rcp.auth.models import LoginSession
    from rcp.auth.sso import end_session_page

    user: Any = request.scope.get("user")
    _forget_session(request)
    ended: LoginSession | None = None
    if getattr(user, "is_authenticated", False) and user.session_id:
        async with request.app.state.db.session() as s:
            ended = await s.get(LoginSession, user.session_id)
            await end_session(s, user.session_id)
            await audit.record(s, event="user_authentication", action="E", request=request, what="logout")
        await revoke(request, session_id=user.session_id)
    # A session opened by a provider also ends there (RP-Initiated Logout): a page sends the browser on.
    response = await end_session_page(request, ended) or RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


async def set_locale(request: Request) -> Response:
    form = await request.form()
    locale = str(form.get("locale", ""))
    if locale not in LOCALES:
        raise BadRequest(f"locale must be one of {', '.join(LOCALES)}.")
    user: Any = request.scope.get("user")
    if getattr(user, "is_authenticated", False):
        from rcp.auth.models import User

        async with request.app.state.db.session() as s:
            row = await s.get(User, user.id)
            if row is not None:
                row.locale = locale
                s.add(row)
    response = RedirectResponse(_safe_next(str(form.get("next", "/meetings"))), status_code=303)
    response.set_cookie(LOCALE_COOKIE, locale, max_age=365 * 86400, samesite="lax", path="/")
    return response


async def session_info(request: Request) -> Response:
    user = current_user(request)
    db: Database = request.app.state.db
    async with db.session() as s:
        row = await s.get(User, user.id)
    return json_out(_me(user, row))


async def session_login(request: Request) -> Response:
    data = await read_json(request, Credentials)
    if not _settings(request).local_passwords:
        await _refuse_local_password(request)
        raise Forbidden(LOCAL_PASSWORDS_OFF)
    db: Database = request.app.state.db
    settings = _settings(request)
    try:
        async with db.session() as s:
            user = await check_password(s, settings, username=data.username, password=data.password,
                                        source=audit.source_of(request), throttle=password_throttle(request.app.state))
            how = "password; second factor relaxed"
            if user.second_factor_required:
                how = await _api_second_factor(request, s, user, data.code)
            if user.must_change_password:
                raise SignInIncomplete("An administrator reset your password: sign in on the sign-in page to "
                                       "choose a new one.")
            row = await open_session(s, settings, user, source=audit.source_of(request), how=how)
    except LoginRefused as refused:
        raise NotAuthenticated(refused.message) from None
    except SecondFactorRefused:
        raise SecondFactorNeeded("Wrong or already used code: send the code your authenticator shows now (or a "
                                 "recovery code) as 'code'.") from None
    except UnreadableSecret:
        raise Conflict("Your second factor can no longer be read (the service's key changed): ask an "
                       "administrator to reset it, then enrol again.") from None
    except Throttled as throttled:
        return JSONResponse(throttled.as_json(), status_code=throttled.status,
                            headers={"Retry-After": str(throttled.retry_after_s)})
    from rcp.auth.sessions import CurrentUser

    response = json_out(_me(CurrentUser.of(user, via="session", session=row), user), status=201)
    _set_session_cookie(request, response, row.id)
    return response


async def _api_second_factor(request: Request, session: Any, user: Any, code: str) -> str:
    """The API sign-in's second factor: what proved it, for the audit trail."""
    settings = _settings(request)
    if await enrolment_state(session, user.id) != "active":
        raise SignInIncomplete("This account has no second factor yet: sign in once on the sign-in page to enrol "
                               "an authenticator.")
    if not code:
        raise SecondFactorNeeded("This account signs in with a second factor: send the code your authenticator "
                                 "shows (or a recovery code) as 'code'.")
    proof = await check_second_factor(
        session, box=box_for(settings), user=user, code=code, at=settings.clock.now(), step_s=settings.totp_step_s,
        cost=settings.argon2, throttle=password_throttle(request.app.state), conn=request,
        source=audit.source_of(request), act="login")
    return f"password and {proof.kind}"


async def session_logout(request: Request) -> Response:
    user = current_user(request)
    _forget_session(request)
    if user.session_id:
        async with request.app.state.db.session() as s:
            await end_session(s, user.session_id)
            await audit.record(s, event="user_authentication", action="E", request=request, what="logout")
        await revoke(request, session_id=user.session_id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/")
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


async def people(request: Request) -> Response:
    user = current_user(request)
    async with request.app.state.db.session() as s:
        found = await users_for_invitation(s, user, specialty=request.query_params.get("specialty", ""))
        return json_out([Person(id=u.id, display_name=u.display_name, family_name=u.family_name,  # type: ignore[arg-type]
                                given_name=u.given_name, prefix=u.prefix, name_to_complete=u.name_incomplete,
                                role=u.role, specialty=u.specialty, hospital=u.hospital) for u in found])


async def audit_export(request: Request) -> Response:
    """The audit trail for administrators, as RFC 5424 syslog lines (for a SIEM or an ATNA repository)."""
    from rcp.scheduling import access

    user = current_user(request)
    access.require(user, access.Action.view_audit)
    try:
        limit = min(int(request.query_params.get("limit", "1000")), 100_000)
    except ValueError:
        raise BadRequest("limit must be a number.") from None
    async with request.app.state.db.session() as s:
        rows = (await s.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit))).all()
        await audit.record(s, event="export", action="R", request=request, what=f"audit trail ({len(rows)} events)")
    lines = list(audit.as_syslog(reversed(rows), hostname=request.url.hostname or "rcp"))
    return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))


async def join_page(request: Request) -> Response:
    """The page a join link opens. Its script reads the token from the URL fragment (never sent here); nothing is
    used up until the guest confirms, so a mail scanner's GET changes nothing."""
    return render(request, "join.html", {"error": "", "renew_token": ""})


async def join_renew(request: Request) -> Response:
    """"Mail me a new link", from the page that refused a used link; the same answer whatever happened."""
    from rcp.auth.links import RENEWED, renew_link
    from rcp.i18n import current_locale
    from rcp.mail import wake

    form = await request.form()
    token = str(form.get("token", ""))[:100].strip()
    if token and request.headers.get("sec-fetch-site", "same-origin") in {"same-origin", "none"}:
        async with request.app.state.db.session() as s:
            await renew_link(s, _settings(request), token, source=audit.source_of(request),
                             locale=current_locale.get())
        wake(request.app.state)
    return render(request, "join.html", {"error": "", "renew_token": "", "notice": _(RENEWED)}, status=202)


async def join_submit(request: Request) -> Response:
    """Use up the link: a session cookie scoped to its meeting, then the room (no token left in the address)."""
    from rcp.auth.links import LinkRefused, open_join_session

    form = await request.form()
    token = str(form.get("token", ""))[:100].strip()
    try:
        # Only our own confirmation page posts here (Fetch Metadata): another site cannot sign a browser in as
        # a guest it chose (login CSRF).
        if not token or request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
            from rcp.auth.links import INVALID

            raise LinkRefused(INVALID)
        async with request.app.state.db.session() as s:
            row = await open_join_session(s, _settings(request), token, source=audit.source_of(request))
    except LinkRefused as refused:
        from rcp.auth.links import INVALID, USED

        return render(request, "join.html", {
            "error": _(refused.msgid) % refused.values if refused.values else _(refused.msgid),
            # A used (or replaced) link may ask for a new one, mailed to the guest's own address.
            "renew_token": token if refused.msgid in {USED, INVALID} and token else "",
        }, status=refused.status)
    _forget_session(request)
    response = RedirectResponse(f"/meetings/{row.meeting_scope}/room", status_code=303)
    _set_session_cookie(request, response, row.id)
    return response


routes: list[BaseRoute] = [
    Route("/join", join_page, methods=["GET"], name="join"),
    Route("/join", join_submit, methods=["POST"]),
    Route("/join/renew", join_renew, methods=["POST"]),
    Route("/login", login_page, methods=["GET"], name="login"),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/settings/locale", set_locale, methods=["POST"], name="set_locale"),
    ApiRoute("/api/session", session_info, method="GET", summary="Who am I (and my CSRF token)", tag="session",
             response=Me),
    ApiRoute("/api/session", session_login, method="POST", summary="Sign in with a password and a second factor",
             tag="session",
             body=Credentials, response=Me, status=201),
    ApiRoute("/api/session", session_logout, method="DELETE", summary="Sign out", tag="session", status=204),
    ApiRoute("/api/users", people, method="GET", summary="People a coordinator can invite", tag="invitations",
             response=Person, many=True, query={"specialty": "only this specialty"}),
    ApiRoute("/api/audit", audit_export, method="GET", summary="Audit trail as RFC 5424 syslog lines",
             tag="audit", media_type="text/plain", query={"limit": "newest N events (default 1000)"}),
]
