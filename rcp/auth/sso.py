"""Single sign-on through OpenID Connect providers: the sign-in round trip, account linking, and the session's end.

The protocol (discovery, PKCE, token checks) is :mod:`rcp.auth.oidc`; this module is the service's side of it:

- ``GET /auth/oidc/{provider}`` starts a sign-in: a pending row (:class:`~rcp.auth.models.OidcAuthorization`) keeps
  the digest of ``state``, the ``nonce``, the PKCE verifier and the digest of a random browser-binding cookie
  (``rcp_oidc``: HttpOnly, SameSite=Lax so that it comes back on the provider's top-level redirect), then a 303 to
  the provider. It is a link, not a form: the pages' CSP ``form-action 'self'`` would stop a form that ends at the
  provider.
- ``GET /auth/oidc/{provider}/callback`` (a GET with ``state``, as the protocol requires: the CSRF defence is the
  state bound to this browser) uses the pending row up (single use: only the request that deletes it goes on;
  :data:`PENDING_FOR` old at most), exchanges the code, verifies the ID token, then finds the account:

  1. an identity already linked (issuer + subject, OIDC Core §5.7, the only stable identifier);
  2. else the RPPS number the provider vouches for (Pro Santé Connect's ``SubjectNameID``), when exactly one
     active account carries it;
  3. else the join link this browser has just used (a guest's session, proof that the mailed invitation reached
     this person): the identity is linked to that guest, whose sessions stay confined to their meeting;
  4. never an e-mail address alone (anybody may put any address in an account at some provider). An unknown
     person gets a page that sends them to their board's coordinator, and no account.

  Every sign-in, link and refusal is audited (DCM 110114 User Authentication).
- ``POST /auth/oidc/{provider}/backchannel-logout`` (OIDC Back-Channel Logout 1.0): the provider ends a person's
  sessions here; a verified logout token ends the matching sessions and their room sockets, as a local sign-out
  does (rcp.room.revocation).
- Signing out of a session opened by a provider also sends the browser to the provider's end-session endpoint
  (:func:`end_session_page`, RP-Initiated Logout 1.0).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp.auth import audit
from rcp.auth.models import LoginSession, OidcAuthorization, OidcIdentity, OidcLogoutToken, Role, User
from rcp.auth.oidc import OidcClient, OidcRefused, rpps_of
from rcp.auth.sessions import CurrentUser
from rcp.clock import as_utc
from rcp.config import OidcProvider, Settings
from rcp.errors import Conflict, Forbidden, NotFound
from rcp.http import current_user
from rcp.i18n import N_
from rcp.i18n import gettext as _
from rcp.templating import render

__all__ = ["BROWSER_COOKIE", "PENDING_FOR", "SignInRefused", "end_session_page", "link_account", "routes"]

logger = logging.getLogger(__name__)

#: The cookie that binds a sign-in sent to a provider to the browser that sent it.
BROWSER_COOKIE = "rcp_oidc"
#: A sign-in not back from the provider within this delay is refused (the person starts again).
PENDING_FOR = timedelta(minutes=10)

FAILED = N_("The sign-in through %(provider)s did not succeed. Please start again from the sign-in page.")
EXPIRED = N_("This sign-in has expired or was already used. Please start again from the sign-in page.")
UNKNOWN = N_("%(provider)s confirmed who you are, but no account of this service is linked to your identity. "
             "Ask your board's coordinator to invite you (with your RPPS number) or to send you a personal "
             "invitation link, then sign in again.")
UNREACHABLE = N_("%(provider)s cannot be reached right now. Try again in a moment, or use another way to sign in.")
NO_MEETING = N_("Your identity is linked to a guest invitation, but no meeting you are invited to is open now. "
                "Come back at the time of the meeting, or ask its coordinator.")


class SignInRefused(Exception):
    """A sign-in that does not go on: ``msgid`` is shown (translated), ``reason`` goes to the audit trail."""

    def __init__(self, msgid: str, reason: str, *, status: int = 403, unknown: bool = False) -> None:
        super().__init__(reason)
        self.msgid = msgid
        self.reason = reason
        self.status = status
        self.unknown = unknown


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _client(request: Request) -> OidcClient:
    client: OidcClient = request.app.state.oidc
    return client


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _provider(request: Request) -> OidcProvider | None:
    client = getattr(request.app.state, "oidc", None)
    return client.provider(str(request.path_params["provider"])) if client is not None else None


def _safe_next(target: str) -> str:
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/meetings"
    return target[:300]


def _refusal_page(request: Request, provider: OidcProvider | None, refused: SignInRefused) -> Response:
    label = provider.label if provider else ""
    return render(request, "signin_refused.html", {
        "message": _(refused.msgid) % {"provider": label}, "unknown": refused.unknown,
    }, status=refused.status)


# -- starting a sign-in -----------------------------------------------------------------------------------------


async def start(request: Request) -> Response:
    """Send the browser to the provider with a new single-use ``state``/``nonce`` bound to it."""
    provider = _provider(request)
    if provider is None:
        raise NotFound("Nothing here: check the address.")
    return await _send_to_provider(request, provider, purpose="login", user_id=None)


async def confirm(request: Request) -> Response:
    """Before a signature: the signed-in physician authenticates again at the provider, now (``prompt=login``,
    ``max_age=0``, checked through ``auth_time``); coming back opens the session's five-minute signing window
    (rcp.auth.reauth), as a password and a code do for a local account."""
    user = current_user(request)
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        # Fetch Metadata: only our own pages send a physician to confirm (another site cannot start it).
        raise Forbidden("Confirm your identity from the page of the decision you sign.")
    if user.is_guest or getattr(user, "via", "") != "session":
        raise Forbidden("Only a physician's own session confirms a signature (never a guest link or a token).")
    provider = _provider(request)
    if provider is None:
        raise NotFound("Nothing here: check the address.")
    async with request.app.state.db.session() as s:
        linked = (await s.exec(select(OidcIdentity.id).where(OidcIdentity.user_id == user.id,
                                                             OidcIdentity.issuer == provider.issuer))).first()
    if linked is None:
        raise Conflict(f"Your account is not linked to {provider.label}: confirm with your password and code.",
                       fields={"provider": "not linked"})
    return await _send_to_provider(request, provider, purpose="reauth", user_id=int(user.id))


async def _send_to_provider(request: Request, provider: OidcProvider, *, purpose: str, user_id: int | None
                            ) -> Response:
    settings = _settings(request)
    try:
        authorization = await _client(request).authorization(provider, fresh=purpose == "reauth")
    except OidcRefused as refused:
        logger.warning("oidc %s: sign-in not started (%s)", provider.name, refused.reason)
        return _refusal_page(request, provider, SignInRefused(UNREACHABLE, refused.reason, status=502))
    browser = request.cookies.get(BROWSER_COOKIE) or secrets.token_urlsafe(32)
    now = settings.clock.now()
    async with request.app.state.db.session() as s:
        # Sign-ins never finished are dropped here, a few at a time: no sweeper needed.
        await s.exec(delete(OidcAuthorization).where(col(OidcAuthorization.created_at) < now - PENDING_FOR))
        s.add(OidcAuthorization(state_sha256=_digest(authorization.state), browser_sha256=_digest(browser),
                                provider=provider.name, nonce=authorization.nonce,
                                code_verifier=authorization.code_verifier, purpose=purpose, user_id=user_id,
                                next_url=_safe_next(request.query_params.get("next", "")), created_at=now))
    response = RedirectResponse(authorization.url, status_code=303)
    response.set_cookie(BROWSER_COOKIE, browser, max_age=int(PENDING_FOR.total_seconds()), httponly=True,
                        samesite="lax", secure=settings.tls or request.url.scheme == "https", path="/auth/oidc")
    return response


# -- coming back --------------------------------------------------------------------------------------------------


async def _take_pending(s: AsyncSession, provider: OidcProvider, state: str, browser: str, now: datetime
                        ) -> OidcAuthorization:
    """The pending sign-in named by ``state``, used up now; refused unless this browser started it, for this
    provider, less than :data:`PENDING_FOR` ago."""
    row = await s.get(OidcAuthorization, _digest(state)) if state else None
    if row is None:
        raise SignInRefused(EXPIRED, "unknown or already used state", status=400)
    taken = await s.exec(delete(OidcAuthorization).where(col(OidcAuthorization.state_sha256) == row.state_sha256))
    if taken.rowcount != 1:  # another request with the same state got there first
        raise SignInRefused(EXPIRED, "state already used", status=400)
    if not browser or not secrets.compare_digest(row.browser_sha256, _digest(browser)):
        raise SignInRefused(EXPIRED, "state not started by this browser", status=400)
    if row.provider != provider.name:
        raise SignInRefused(EXPIRED, "state of another provider", status=400)
    if now - as_utc(row.created_at) > PENDING_FOR:
        raise SignInRefused(EXPIRED, "state expired", status=400)
    return row


async def link_account(s: AsyncSession, provider: OidcProvider, claims: dict[str, Any], *,
                       joined: Any = None) -> tuple[User, OidcIdentity, str]:
    """The account of the person the provider vouches for, linking it on a first sign-in (see the module
    docstring); returns the user, the identity row and how it was found (``linked``, ``rpps``, ``join_link``).

    ``joined`` is the browser's current session when it was opened by a join link (a guest's proof of the
    invitation mail). Raises :class:`SignInRefused` for an unknown person.
    """
    subject = str(claims["sub"])
    identity = (await s.exec(select(OidcIdentity).where(OidcIdentity.issuer == provider.issuer,
                                                        OidcIdentity.subject == subject))).first()
    if identity is not None:
        user = await s.get(User, identity.user_id)
        if user is None or not user.active:
            raise SignInRefused(UNKNOWN, f"identity {identity.id} linked to a deactivated account", unknown=True)
        return user, identity, "linked"
    user, how = None, ""
    rpps = rpps_of(claims, provider.rpps_claims)
    if rpps:
        found = (await s.exec(select(User).where(User.rpps == rpps, col(User.active).is_(True),
                                                 col(User.role).in_([Role.clinician, Role.coordinator, Role.admin,
                                                                     Role.guest])))).all()
        if len(found) == 1:
            user, how = found[0], "rpps"
    if user is None and joined is not None and getattr(joined, "meeting_scope", None) is not None:
        candidate = await s.get(User, int(joined.id))
        if candidate is not None and candidate.active and candidate.role == Role.guest:
            user, how = candidate, "join_link"
    if user is None or user.id is None:
        raise SignInRefused(UNKNOWN, "no account linked to this identity" + (" (RPPS given)" if rpps else ""),
                            unknown=True)
    identity = OidcIdentity(issuer=provider.issuer, subject=subject, user_id=user.id, linked_by=how)
    s.add(identity)
    await s.flush()
    await audit.record(s, event="user_authentication", action="C", user=CurrentUser.of(user, via="session"),
                       what=f"identity {identity.id} at {provider.name} linked to user {user.id} by {how}")
    return user, identity, how


async def _guest_meeting(s: AsyncSession, settings: Settings, user: User, joined: Any) -> int:
    """The one meeting a guest's provider session reaches: the one whose join link this browser used, else the
    guest's invitation to a meeting open now (its link window, rcp.auth.links)."""
    from rcp.auth.links import window
    from rcp.scheduling.models import Invitation, Meeting, MeetingStatus

    if joined is not None and getattr(joined, "meeting_scope", None) is not None and int(joined.id) == user.id:
        return int(joined.meeting_scope)
    now = settings.clock.now()
    rows = (await s.exec(select(Meeting).join(Invitation, col(Invitation.meeting_id) == col(Meeting.id))
                         .where(Invitation.user_id == user.id,
                                col(Meeting.status).not_in([MeetingStatus.closed, MeetingStatus.cancelled]))
                         .order_by(col(Meeting.starts_at)))).all()
    for meeting in rows:
        opens, closes = window(meeting)
        if opens <= now <= closes and meeting.id is not None:
            return meeting.id
    raise SignInRefused(NO_MEETING, f"guest {user.id}: no meeting open now")


async def _verified_claims(request: Request, provider: OidcProvider, pending: OidcAuthorization, code: str
                           ) -> tuple[dict[str, Any], str]:
    """The ID token's claims (with userinfo's, when the provider is read for them) and the raw ID token."""
    client = _client(request)
    settings = _settings(request)
    tokens = await client.exchange(provider, code=code, code_verifier=pending.code_verifier)
    now = settings.clock.now().timestamp()
    fresh_since = as_utc(pending.created_at).timestamp() if pending.purpose == "reauth" else None
    claims = await client.id_token_claims(provider, tokens, nonce=pending.nonce, now=now, fresh_since=fresh_since)
    if provider.userinfo:
        extra = await client.userinfo(provider, tokens, subject=str(claims["sub"]))
        claims = {**extra, **claims}
    return claims, str(tokens["id_token"])


async def callback(request: Request) -> Response:
    """The provider's answer (OIDC Core §3.1.2.5): check everything, find the account, open a session."""
    provider = _provider(request)
    if provider is None:
        raise NotFound("Nothing here: check the address.")
    settings = _settings(request)
    db = request.app.state.db
    source = audit.source_of(request)
    params = request.query_params
    caller: Any = request.scope.get("user")
    joined: Any = caller if getattr(caller, "is_authenticated", False) else None
    try:
        async with db.session() as s:
            pending = await _take_pending(s, provider, params.get("state", "")[:200],
                                          request.cookies.get(BROWSER_COOKIE, ""), settings.clock.now())
        if params.get("error"):
            raise SignInRefused(FAILED, f"provider answered error {params.get('error', '')[:40]}")
        if not params.get("code"):
            raise SignInRefused(FAILED, "no code in the answer", status=400)
        try:
            claims, id_token = await _verified_claims(request, provider, pending, params["code"][:2000])
        except OidcRefused as refused:
            raise SignInRefused(FAILED, refused.reason) from None
        if pending.purpose == "reauth":
            return await _confirmed(request, provider, pending, claims, joined=joined, source=source)
        async with db.session() as s:
            row, _user = await _open_session(s, settings, provider, claims, id_token, joined=joined, source=source)
    except SignInRefused as refused:
        async with db.session() as s:
            await audit.record(s, event="user_authentication", action="E", outcome=4, source=source, user=None,
                               what=f"sign-in through {provider.name} refused: {refused.reason}"[:300])
        logger.info("oidc %s: sign-in refused (%s)", provider.name, refused.reason)
        response = _refusal_page(request, provider, refused)
        response.delete_cookie(BROWSER_COOKIE, path="/auth/oidc")
        return response
    from rcp.auth.routes import _forget_session, _set_session_cookie

    _forget_session(request)
    previous = str(getattr(joined, "session_id", None) or "")
    if previous:
        # The join-link (or earlier) session of this browser is replaced by the new one (no session fixation).
        async with db.session() as s:
            old = await s.get(LoginSession, previous)
            if old is not None and old.id != row.id:
                await s.delete(old)
        from rcp.http import revoke

        await revoke(request, session_id=previous)
    response = RedirectResponse(pending.next_url if row.meeting_scope is None
                                else f"/meetings/{row.meeting_scope}/room", status_code=303)
    _set_session_cookie(request, response, row.id)
    response.delete_cookie(BROWSER_COOKIE, path="/auth/oidc")
    return response


async def _confirmed(request: Request, provider: OidcProvider, pending: OidcAuthorization, claims: dict[str, Any],
                     *, joined: Any, source: str) -> Response:
    """A fresh authentication for a signature came back: the provider must vouch for the very person whose session
    asked (same account, same browser session), authenticated after the request; then the window opens."""
    from rcp.auth.reauth import open_signing_window

    db = request.app.state.db
    settings = _settings(request)
    session_id = str(getattr(joined, "session_id", None) or "")
    async with db.session() as s:
        identity = (await s.exec(select(OidcIdentity).where(OidcIdentity.issuer == provider.issuer,
                                                            OidcIdentity.subject == str(claims["sub"])))).first()
    if identity is None or identity.user_id != pending.user_id or joined is None \
            or int(joined.id) != pending.user_id or not session_id:
        raise SignInRefused(FAILED, f"fresh authentication for user {pending.user_id} came back for another person "
                            "or another session")
    until = await open_signing_window(db, session_id, settings)
    if until is None:
        raise SignInRefused(EXPIRED, f"fresh authentication for user {pending.user_id}: the session ended")
    auth_time = claims.get("auth_time")
    async with db.session() as s:
        row = await s.get(LoginSession, session_id)
        if row is not None and isinstance(auth_time, (int, float)):
            row.auth_time = datetime.fromtimestamp(auth_time, tz=until.tzinfo)
            s.add(row)
        await audit.record(s, event="user_authentication", action="E", source=source, user=joined,
                           what=f"fresh authentication through {provider.name} (identity {identity.id}): "
                                "signing window open")
    response = RedirectResponse(pending.next_url, status_code=303)
    response.delete_cookie(BROWSER_COOKIE, path="/auth/oidc")
    return response


async def _open_session(s: AsyncSession, settings: Settings, provider: OidcProvider, claims: dict[str, Any],
                        id_token: str, *, joined: Any, source: str) -> tuple[LoginSession, User]:
    user, identity, _how = await link_account(s, provider, claims, joined=joined)
    if user.role == Role.service:
        raise SignInRefused(UNKNOWN, f"user {user.id} is a service account", unknown=True)
    scope = await _guest_meeting(s, settings, user, joined) if user.role == Role.guest else None
    now = settings.clock.now()
    auth_time = claims.get("auth_time")
    assert user.id is not None
    row = LoginSession(
        id=secrets.token_urlsafe(32), user_id=user.id, csrf_token=secrets.token_urlsafe(32), created_at=now,
        last_seen_at=now, source=source[:64], meeting_scope=scope, oidc_provider=provider.name,
        oidc_subject=str(claims["sub"])[:255], oidc_sid=str(claims.get("sid") or "")[:255], id_token=id_token,
        auth_time=datetime.fromtimestamp(auth_time, tz=now.tzinfo) if isinstance(auth_time, (int, float)) else None,
    )
    s.add(row)
    identity.last_login_at = now
    s.add(identity)
    await audit.record(s, event="user_authentication", action="E", source=source,
                       user=CurrentUser.of(user, via="session"), meeting_id=scope,
                       what=f"login through {provider.name} (identity {identity.id})")
    return row, user


# -- the session's end --------------------------------------------------------------------------------------------


async def end_session_page(request: Request, row: LoginSession | None) -> Response | None:
    """After a local sign-out of a session opened by a provider: a page that sends the browser on to the provider's
    end-session endpoint (RP-Initiated Logout 1.0), with ``id_token_hint`` and ``post_logout_redirect_uri``;
    None when there is nowhere to go.

    A page and not a redirect: sign-out is a form, and the pages' CSP (``form-action 'self'``) would stop a form
    submission redirected to another site; the page moves on by itself (meta refresh) and has a link.
    """
    client = getattr(request.app.state, "oidc", None)
    if row is None or not row.oidc_provider or client is None:
        return None
    provider = client.provider(row.oidc_provider)
    if provider is None:
        return None
    url = await client.end_session_url(provider, id_token=row.id_token,
                                       post_logout_redirect_uri=f"{_settings(request).public_url}/login")
    if not url:
        return None
    return render(request, "signed_out.html", {"provider": provider.label, "end_session_url": url})


def _bad_logout(reason: str) -> Response:
    """Back-Channel Logout 1.0 §2.8: 400 with an OAuth error body when the token is not accepted."""
    return JSONResponse({"error": "invalid_request", "error_description": reason}, status_code=400,
                        headers={"Cache-Control": "no-store"})


async def backchannel_logout(request: Request) -> Response:
    """The provider says a person's session there ended: end ours (and their room sockets) too."""
    provider = _provider(request)
    if provider is None:
        return _bad_logout("unknown provider")
    settings = _settings(request)
    db = request.app.state.db
    source = audit.source_of(request)
    form = await request.form()
    token = str(form.get("logout_token", ""))[:20_000]
    now = settings.clock.now()
    try:
        if not token:
            raise OidcRefused("no logout_token")
        claims = await _client(request).logout_token_claims(provider, token, now=now.timestamp())
        async with db.session() as s:
            s.add(OidcLogoutToken(issuer=provider.issuer, jti=str(claims["jti"])[:255],
                                  expires_at=now + timedelta(seconds=2 * 600 + 2 * settings.oidc_clock_skew_s)))
            try:
                await s.flush()
            except IntegrityError:
                raise OidcRefused("logout token refused: jti already used") from None
            ended = await _end_provider_sessions(s, provider, claims, source=source)
    except OidcRefused as refused:
        async with db.session() as s:
            await audit.record(s, event="user_authentication", action="E", outcome=4, source=source, user=None,
                               what=f"back-channel logout from {provider.name} refused: {refused.reason}"[:300])
        return _bad_logout(refused.reason)
    from rcp.http import revoke

    for session_id in ended:
        await revoke(request, session_id=session_id)
    backend = getattr(request.app.state, "auth_backend", None)
    if backend is not None:
        for session_id in ended:
            backend.forget_where(session=_session_digest(session_id))
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


def _session_digest(session_id: str) -> str:
    from rcp.auth.sessions import session_digest

    return session_digest(session_id)


async def _end_provider_sessions(s: AsyncSession, provider: OidcProvider, claims: dict[str, Any], *,
                                 source: str) -> list[str]:
    """Delete the sessions the logout token names (its ``sid``, and its ``sub`` when given); audit each."""
    query = select(LoginSession).where(LoginSession.oidc_provider == provider.name)
    if isinstance(claims.get("sid"), str):
        query = query.where(LoginSession.oidc_sid == claims["sid"])
    if isinstance(claims.get("sub"), str):
        query = query.where(LoginSession.oidc_subject == claims["sub"])
    rows = (await s.exec(query)).all()
    for row in rows:
        user = await s.get(User, row.user_id)
        await audit.record(s, event="user_authentication", action="E", source=source,
                           user=CurrentUser.of(user, via="session") if user is not None else None,
                           what=f"logout by {provider.name} (back-channel)")
        await s.delete(row)
    if not rows:
        await audit.record(s, event="user_authentication", action="E", source=source, user=None,
                           what=f"back-channel logout from {provider.name}: no session of ours")
    return [row.id for row in rows]


routes: list[BaseRoute] = [
    Route("/auth/oidc/{provider}", start, methods=["GET"], name="oidc_start"),
    Route("/auth/oidc/{provider}/callback", callback, methods=["GET"], name="oidc_callback"),
    Route("/auth/oidc/{provider}/confirm", confirm, methods=["GET"], name="oidc_confirm"),
    Route("/auth/oidc/{provider}/backchannel-logout", backchannel_logout, methods=["POST"],
          name="oidc_backchannel_logout"),
]
