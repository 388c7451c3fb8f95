"""A physician signs in through the hospital's identity provider in a real browser, and joins the meeting's room.

The provider is the test OpenID Provider process (tests/fixtures/oidc_provider.py); Chromium follows the redirects
service -> provider -> service as it would with Pro Santé Connect, and signing out goes on to the provider.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from rcp.auth.models import OidcIdentity
from rcp.config import Settings
from rcp.db import Database
from tests.auth.oidc_world import Served, register, serve_with_provider
from tests.e2e.pages import TIMEOUT_MS
from tests.factories import make_meeting
from tests.fixtures.oidc_provider import OpenIdProvider

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
async def served(settings: Settings, db: Database, oidc_provider: OpenIdProvider) -> AsyncIterator[Served]:
    with serve_with_provider(settings, oidc_provider) as served:
        await register(served)
        yield served


async def test_a_physician_signs_in_through_the_provider_and_joins_the_room(served: Served, db: Database,
                                                                            new_page: Any) -> None:
    meeting = await make_meeting(db, cases=1)
    physician = meeting.invitee("radiologist")
    subject = f"psc-{secrets.token_hex(6)}"
    async with db.session() as s:
        s.add(OidcIdentity(issuer=served.provider.url, subject=subject, user_id=physician.id, linked_by="rpps"))
    await served.provider.add_user(subject, {"family_name": "Leroy", "given_name": "Anne"})
    await served.provider.sign_in_as(subject)

    page = await new_page(viewport=(1280, 720), bypass_csp=True)  # the room page's checks evaluate strings
    await page.goto(f"{served.url}/meetings/{meeting.id}/room")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    provider_button = page.get_by_role("link", name="Sign in with Pro Santé Connect")
    password_button = page.get_by_role("button", name="Sign in")
    await expect(provider_button).to_be_visible()
    # The provider first, the local password second.
    first = await provider_button.bounding_box()
    second = await password_button.bounding_box()
    assert first is not None and second is not None and first["y"] < second["y"]
    await provider_button.click()
    await expect(page).to_have_url(f"{served.url}/meetings/{meeting.id}/room", timeout=TIMEOUT_MS)
    await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
    await expect(page.locator("[data-room-participants]")).to_contain_text(physician.display_name)

    # Signing out here also signs out at the provider, and comes back to the sign-in page.
    await page.goto(f"{served.url}/meetings")
    await page.locator("form[action='/logout'] button").first.click()
    await expect(page).to_have_url(f"{served.url}/login", timeout=TIMEOUT_MS)
    ended = [e for e in (await served.provider.log())["log"] if e["endpoint"] == "end_session"]
    assert ended and ended[-1]["sub"] == subject
