"""Sign-in through an OpenID Connect provider, against a real provider process (tests/fixtures/oidc_provider.py).

What a hospital's security officer asks, one test each: a physician signs in and lands on their meetings; a first
sign-in links the account by the RPPS number the provider vouches for, never by e-mail; an unknown person gets no
account; a replayed, expired or foreign ``state``, a wrong ``nonce``, a bad signature, a token for another client,
a skewed clock are refused (and audited); sign-out goes on to the provider; the provider's back-channel logout ends
the session and closes its room socket; local passwords can be switched off.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import col, func, select

from rcp.auth.models import AuditEvent, LoginSession, OidcIdentity, User
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database
from tests.auth.oidc_world import (
    CLIENT_ID,
    OTHER_CLIENT,
    Served,
    browser,
    follow,
    register,
    serve_with_provider,
)
from tests.factories import MadeUser, credentials, make_meeting, make_user, unique
from tests.fixtures.oidc_provider import OpenIdProvider
from tests.fixtures.smtp import MailBox, join_link
from tests.room.client import RoomClient


@pytest.fixture(scope="module")
def served(settings: Settings, db: Database, oidc_provider: OpenIdProvider) -> Iterator[Served]:
    with serve_with_provider(settings, oidc_provider) as served:
        yield served


@pytest.fixture
async def world(served: Served) -> AsyncIterator[Served]:
    """The provider reset, our client (and another one) registered, for each test."""
    await register(served)
    yield served


async def linked_physician(db: Database, provider: OpenIdProvider, served: Served, **claims: Any
                           ) -> tuple[MadeUser, str]:
    """A clinician whose account is already linked to a subject at the provider, who is the provider's current
    user."""
    user = await make_user(db, specialty="radiologist")
    subject = f"psc-{secrets.token_hex(6)}"
    async with db.session() as s:
        s.add(OidcIdentity(issuer=provider.url, subject=subject, user_id=user.id, linked_by="rpps"))
    await provider.add_user(subject, {"family_name": "Martin", "given_name": "Claire", **claims})
    await provider.sign_in_as(subject)
    return user, subject


async def sign_in(served: Served, http: httpx.AsyncClient, next_url: str = "/meetings") -> httpx.Response:
    """Click "Sign in with Pro Santé Connect" and follow the round trip back to the service."""
    return await follow(http, f"/auth/oidc/psc?next={next_url}", stop_at=next_url)


def new_rpps() -> str:
    """A random RPPS number with a right Luhn key (rcp.people.check_rpps)."""
    from rcp.people import luhn_ok

    body = f"1{secrets.randbelow(10**9):09d}"
    return next(body + str(key) for key in range(10) if luhn_ok(body + str(key)))


async def who(http: httpx.AsyncClient) -> dict[str, Any] | None:
    response = await http.get("/api/session")
    return response.json() if response.status_code == 200 else None


async def refusals(db: Database, text: str) -> int:
    async with db.session() as s:
        return int((await s.exec(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.event_code == "110114", AuditEvent.outcome == 4, col(AuditEvent.what).contains(text)))).one())


async def test_a_linked_physician_signs_in_and_lands_on_the_page_asked(world: Served, db: Database) -> None:
    user, _subject = await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        page = await http.get("/login")
        assert "Sign in with Pro Santé Connect" in page.text
        assert page.text.index("Sign in with Pro Santé Connect") < page.text.index('name="password"')
        landed = await sign_in(world, http, "/meetings")
        assert landed.status_code == 303 and landed.headers["location"] == "/meetings"
        me = await who(http)
        meetings = await http.get("/meetings")
    assert me is not None and me["id"] == user.id
    # Signed in by the provider: the header offers no local password to change (the provider holds the credentials).
    assert meetings.status_code == 200 and 'href="/account/password"' not in meetings.text
    asked = [entry for entry in (await world.provider.log())["log"] if entry["endpoint"] == "authorize"]
    assert asked[-1]["scope"] == "openid scope_all" and asked[-1]["acr_values"] == "eidas1"
    async with db.session() as s:
        row = (await s.exec(select(LoginSession).where(LoginSession.user_id == user.id))).one()
        assert row.oidc_provider == "psc" and row.oidc_sid and row.auth_time is not None
        logins = (await s.exec(select(AuditEvent).where(AuditEvent.user_id == user.id,
                                                         AuditEvent.event_code == "110114"))).all()
    assert any(e.what.startswith("login through psc") and e.outcome == 0 for e in logins)


async def test_first_sign_in_links_the_account_by_rpps(world: Served, db: Database) -> None:
    rpps = new_rpps()
    user = await make_user(db, specialty="surgeon")
    async with db.session() as s:
        row = await s.get(User, user.id)
        assert row is not None
        row.rpps = rpps
        s.add(row)
    subject = f"psc-{secrets.token_hex(6)}"
    # Pro Santé Connect's national identifier of an RPPS professional: "8" + the RPPS number, in userinfo.
    await world.provider.add_user(subject, {"SubjectNameID": "8" + rpps, "family_name": "Durand"})
    await world.provider.sign_in_as(subject)
    async with browser(world) as http:
        await sign_in(world, http)
        me = await who(http)
    assert me is not None and me["id"] == user.id
    async with db.session() as s:
        identity = (await s.exec(select(OidcIdentity).where(OidcIdentity.subject == subject))).one()
    assert identity.user_id == user.id and identity.linked_by == "rpps" and identity.issuer == world.provider.url


async def test_a_guest_who_used_their_join_link_is_linked_and_comes_back_through_the_provider(
        world: Served, db: Database, smtp_server: MailBox) -> None:
    """The invitation mail reached this person (they used its link): their first sign-in through the provider
    links the identity to that guest, and later sign-ins reach the same one meeting, never more."""
    made = await make_meeting(db, cases=1, invite=(), starts_at=datetime.now(UTC) + timedelta(minutes=30))
    address = f"{unique('guest')}@chu-x.fr"
    async with browser(world) as coordinator:
        me = (await coordinator.post("/api/session", json=credentials(made.coordinator))).json()
        invited = await coordinator.post(f"/api/meetings/{made.id}/guests", headers={"X-CSRF-Token": me["csrf_token"]},
                                         json={"display_name": "Dr Denise EXTERNE", "email": address,
                                               "specialty": "surgeon", "hospital": "CHU X"})
        assert invited.status_code == 201, invited.text
    _link, token = join_link((await smtp_server.wait_for(address))[0])
    subject = f"psc-{secrets.token_hex(6)}"
    await world.provider.add_user(subject, {"family_name": "Externe"})
    await world.provider.sign_in_as(subject)
    async with browser(world) as guest:
        joined = await guest.post("/join", data={"token": token})
        assert joined.status_code == 303
        landed = await sign_in(world, guest, f"/meetings/{made.id}/room")
        assert landed.headers["location"] == f"/meetings/{made.id}/room"
        linked = await who(guest)
        assert linked is not None and linked["is_guest"]
    async with db.session() as s:
        identity = (await s.exec(select(OidcIdentity).where(OidcIdentity.subject == subject))).one()
    assert identity.linked_by == "join_link" and identity.user_id == linked["id"]
    async with browser(world) as later:  # another day, another browser, no link: the provider is enough
        await sign_in(world, later, f"/meetings/{made.id}/room")
        again = await who(later)
        assert again is not None and again["id"] == linked["id"]
        assert [m["id"] for m in (await later.get("/api/meetings")).json()] == [made.id]  # confined to it


async def test_an_unknown_person_gets_no_account_even_with_a_known_email(world: Served, db: Database) -> None:
    colleague = await make_user(db, email=f"c{secrets.token_hex(4)}@chu-x.fr")
    async with db.session() as s:
        users_before = int((await s.exec(select(func.count()).select_from(User))).one())
    subject = f"psc-{secrets.token_hex(6)}"
    # Same address as an account here, no RPPS: an address proves nothing about who holds it.
    async with db.session() as s:
        email = (await s.get(User, colleague.id)).email  # type: ignore[union-attr]
    await world.provider.add_user(subject, {"email": email, "preferred_username": email})
    await world.provider.sign_in_as(subject)
    before = await refusals(db, "no account linked")
    async with browser(world) as http:
        page = await sign_in(world, http)
        assert page.status_code == 403
        assert "Ask your board's coordinator" in page.text
        assert await who(http) is None
    async with db.session() as s:
        assert (await s.exec(select(OidcIdentity).where(OidcIdentity.subject == subject))).first() is None
        assert int((await s.exec(select(func.count()).select_from(User))).one()) == users_before
    assert await refusals(db, "no account linked") == before + 1


async def test_a_replayed_state_is_refused(world: Served, db: Database) -> None:
    await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        at_callback = await follow(http, "/auth/oidc/psc?next=/meetings", stop_at=f"{world.url}/auth/oidc/psc/callback")
        callback = at_callback.headers["location"]
        assert (await http.get(callback)).status_code == 303  # the first use signs in
        await http.post("/logout", data={"csrf_token": (await who(http) or {}).get("csrf_token", "")})
        before = await refusals(db, "state")
        replay = await http.get(callback)
    assert replay.status_code == 400 and "expired or was already used" in replay.text
    assert await refusals(db, "state") == before + 1


async def test_an_expired_state_is_refused(world: Served, db: Database, clock: SettableClock) -> None:
    await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        at_callback = await follow(http, "/auth/oidc/psc", stop_at=f"{world.url}/auth/oidc/psc/callback")
        clock.advance(timedelta(minutes=11))
        late = await http.get(at_callback.headers["location"])
        assert late.status_code == 400 and await who(http) is None


async def test_a_state_started_in_another_browser_is_refused(world: Served, db: Database) -> None:
    """Login CSRF: an attacker's callback address, opened in the victim's browser, signs nobody in."""
    await linked_physician(db, world.provider, world)
    async with browser(world) as attacker, browser(world) as victim:
        at_callback = await follow(attacker, "/auth/oidc/psc", stop_at=f"{world.url}/auth/oidc/psc/callback")
        forged = await victim.get(at_callback.headers["location"])
        assert forged.status_code == 400 and await who(victim) is None


@pytest.mark.parametrize(("how", "audited"), [
    ({"nonce": "not-the-nonce"}, "InvalidClaimError nonce"),
    ({"wrong_key": True}, "signature not verified"),
    ({"aud": OTHER_CLIENT}, "InvalidClaimError aud"),
    ({"iss": "http://127.0.0.1:9/other-issuer"}, "InvalidClaimError iss"),
    ({"iat_shift": 600}, "InvalidClaimError iat"),  # issued ten minutes in the future: beyond the skew allowed
    ({"iat_shift": -3600}, "ExpiredTokenError"),  # an old token (expired an hour ago)
], ids=["nonce", "signature", "aud", "iss", "iat-future", "old"])
async def test_a_wrong_id_token_signs_nobody_in(world: Served, db: Database, how: dict[str, Any],
                                                audited: str) -> None:
    await linked_physician(db, world.provider, world)
    await world.provider.misbehave(**how)
    before = await refusals(db, audited)
    async with browser(world) as http:
        page = await sign_in(world, http)
        assert page.status_code == 403 and "did not succeed" in page.text
        assert await who(http) is None
    assert await refusals(db, audited) == before + 1


async def test_a_small_clock_difference_is_accepted(world: Served, db: Database) -> None:
    user, _subject = await linked_physician(db, world.provider, world)
    await world.provider.misbehave(iat_shift=world.settings.oidc_clock_skew_s // 2)
    async with browser(world) as http:
        await sign_in(world, http)
        me = await who(http)
    assert me is not None and me["id"] == user.id


async def test_sign_out_goes_on_to_the_provider(world: Served, db: Database) -> None:
    _user, subject = await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        await sign_in(world, http)
        me = await who(http)
        assert me is not None
        page = await http.post("/logout", data={"csrf_token": me["csrf_token"]})
        assert page.status_code == 200 and await who(http) is None
        end = page.text.split('data-end-session', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        query = parse_qs(urlsplit(end).query)
        assert end.startswith(f"{world.provider.url}/logout")
        assert query["post_logout_redirect_uri"] == [f"{world.url}/login"] and query["client_id"] == [CLIENT_ID]
        back = await follow(http, end)
        assert back.status_code == 200 and back.url.path == "/login"
    ended = [e for e in (await world.provider.log())["log"] if e["endpoint"] == "end_session"]
    assert ended and ended[-1]["sub"] == subject  # the provider accepted our id_token_hint


async def test_back_channel_logout_ends_the_session_and_closes_the_room_socket(world: Served,
                                                                                db: Database) -> None:
    meeting = await make_meeting(db)
    physician = meeting.invitee("radiologist")
    subject = f"psc-{secrets.token_hex(6)}"
    async with db.session() as s:
        s.add(OidcIdentity(issuer=world.provider.url, subject=subject, user_id=physician.id, linked_by="rpps"))
    await world.provider.add_user(subject, {"family_name": "Petit"})
    await world.provider.sign_in_as(subject)
    async with browser(world) as http:
        await sign_in(world, http)
        assert await who(http) is not None
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        room = await RoomClient.open(world.url, cookie, meeting.id)
        try:
            assert room.welcome
            sent = await world.provider.backchannel_logout(CLIENT_ID, sub=subject, sid="current")
            assert sent["status"] == 200
            await room.wait_for(lambda c: c.closed.is_set(), timeout=30)
            assert room.close_code == 4401
            assert await who(http) is None
        finally:
            await room.close()
    async with httpx.AsyncClient(timeout=30) as op:
        replayed = await op.post(f"{world.url}/auth/oidc/psc/backchannel-logout",
                                 data={"logout_token": sent["logout_token"]})
    assert replayed.status_code == 400 and "jti" in replayed.json()["error_description"]


@pytest.mark.parametrize("how", [{"aud": OTHER_CLIENT}, {"wrong_key": True}, {"iat_shift": 900}],
                         ids=["aud", "signature", "iat-future"])
async def test_a_wrong_logout_token_ends_nothing(world: Served, db: Database, how: dict[str, Any]) -> None:
    user, subject = await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        await sign_in(world, http)
        sent = await world.provider.backchannel_logout(CLIENT_ID, sub=subject, sid="current", **how)
        assert sent["status"] == 400
        me = await who(http)
    assert me is not None and me["id"] == user.id


async def test_local_passwords_switched_off(settings: Settings, db: Database,
                                            oidc_provider: OpenIdProvider) -> None:
    user = await make_user(db)
    with serve_with_provider(settings, oidc_provider, local_passwords=False) as served:
        async with browser(served) as http:
            page = await http.get("/login")
            assert "Sign in with Pro Santé Connect" in page.text and 'name="password"' not in page.text
            api = await http.post("/api/session", json={"username": user.username, "password": user.password})
            assert api.status_code == 403
            form = await http.post("/login", data={"username": user.username, "password": user.password,
                                                  "login_csrf": "x"})
            assert form.status_code == 403 and await who(http) is None
    assert await refusals(db, "local passwords are switched off") >= 2


async def test_a_logout_token_naming_the_person_ends_all_their_sessions(world: Served, db: Database) -> None:
    """Back-Channel Logout 1.0 §2.4: a token with ``sub`` and no ``sid`` ends every session of that person here
    (two browsers), and nobody else's."""
    user, subject = await linked_physician(db, world.provider, world)
    bystander, _other = await linked_physician(db, world.provider, world)
    async with browser(world) as first, browser(world) as second, browser(world) as third:
        await world.provider.sign_in_as(subject)
        await sign_in(world, first)
        await sign_in(world, second)
        await world.provider.sign_in_as(_other)
        await sign_in(world, third)
        sent = await world.provider.backchannel_logout(CLIENT_ID, sub=subject)
        assert sent["status"] == 200
        assert await who(first) is None and await who(second) is None
        me = await who(third)
    assert me is not None and me["id"] == bystander.id
    async with db.session() as s:
        assert (await s.exec(select(LoginSession).where(LoginSession.user_id == user.id))).first() is None


async def test_a_fresh_login_at_the_provider_opens_the_signing_window(world: Served, db: Database) -> None:
    """Before a signature: prompt=login and max_age=0 at the provider, auth_time checked, then the session's
    five-minute signing window (rcp.auth.reauth) is open for this session only."""
    from rcp.auth.reauth import signing_window

    user, _subject = await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        await sign_in(world, http)
        session_id = await session_of(db, user.id)
        assert await signing_window(db, session_id, world.settings) is None
        back = await follow(http, "/auth/oidc/psc/confirm?next=/meetings", stop_at="/meetings")
        assert back.status_code == 303 and back.headers["location"] == "/meetings"
        assert await signing_window(db, session_id, world.settings) is not None
    asked = [e for e in (await world.provider.log())["log"] if e["endpoint"] == "authorize"][-1]
    assert asked["prompt"] == "login" and asked["max_age"] == "0"
    assert (await world.provider.log())["fresh_logins"] >= 2


async def test_an_old_sign_in_does_not_stand_for_a_fresh_one(world: Served, db: Database) -> None:
    from rcp.auth.reauth import signing_window

    user, _subject = await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        await sign_in(world, http)
        await world.provider.misbehave(stale_auth_time=True)
        before = await refusals(db, "no fresh authentication")
        page = await follow(http, "/auth/oidc/psc/confirm?next=/meetings", stop_at="/meetings")
        assert page.status_code == 403
        assert await signing_window(db, await session_of(db, user.id), world.settings) is None
    assert await refusals(db, "no fresh authentication") == before + 1


async def test_a_fresh_login_of_another_person_opens_no_window(world: Served, db: Database) -> None:
    from rcp.auth.reauth import signing_window

    user, _subject = await linked_physician(db, world.provider, world)
    async with browser(world) as http:
        await sign_in(world, http)
        await linked_physician(db, world.provider, world)  # a colleague now signs in at the provider
        page = await follow(http, "/auth/oidc/psc/confirm?next=/meetings", stop_at="/meetings")
        assert page.status_code == 403
        assert await signing_window(db, await session_of(db, user.id), world.settings) is None


async def session_of(db: Database, user_id: int) -> str:
    async with db.session() as s:
        return (await s.exec(select(LoginSession.id).where(LoginSession.user_id == user_id))).one()
