"""A physician signed in through the identity provider signs a fiche after a fresh login there, in Chromium.

The surgeon of the demo's thoracic board signs in through the test OpenID Provider (tests/fixtures/oidc_provider.py)
and sits in the room with the oncologist and the radiotherapist (their sockets); the decision is written; "Sign"
finds no signing window open, so the page sends the surgeon to the provider for a fresh login (prompt=login,
max_age=0), back to the room, and "Sign" then signs within the five-minute window, with no password asked.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from rcp.auth.models import OidcIdentity, User
from rcp.db import Database
from tests.auth.oidc_world import Served, register, serve_with_provider
from tests.e2e.pages import TIMEOUT_MS
from tests.fixtures.browser import NewPage
from tests.fixtures.oidc_provider import OpenIdProvider
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service
from tests.servers import until

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory, oidc_provider: OpenIdProvider
                 ) -> AsyncIterator[tuple[Served, int]]:
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("oidc-sign-e2e"))
    with serve_with_provider(settings, oidc_provider) as served:
        await register(served)
        yield served, meeting_id


async def test_a_physician_signs_after_a_fresh_login_at_the_provider(served: tuple[Served, int],
                                                                     new_page: NewPage) -> None:
    world, meeting_id = served
    db = Database(world.settings.database_url)
    subject = f"psc-{secrets.token_hex(6)}"
    try:
        async with db.session() as s:
            surgeon_id = (await s.exec(select(User.id).where(User.username == "dr.chirurgien"))).one()
            s.add(OidcIdentity(issuer=world.provider.url, subject=subject, user_id=surgeon_id, linked_by="rpps"))
    finally:
        await db.close()
    await world.provider.add_user(subject, {"family_name": "Lefèvre", "given_name": "Marc"})
    await world.provider.sign_in_as(subject)

    chair = await RoomClient.open(world.url, await session_cookie(world.url, "secretariat"), meeting_id)
    others = [await RoomClient.open(world.url, await session_cookie(world.url, name), meeting_id)
              for name in ("dr.oncologue", "dr.radiotherapeute")]
    api: httpx.AsyncClient | None = None
    page = await new_page(viewport=(1600, 1000), bypass_csp=True)  # the room page's checks evaluate strings
    try:
        await page.goto(f"{world.url}/meetings/{meeting_id}/room")
        await page.get_by_role("link", name="Sign in with Pro Santé Connect").click()
        await page.wait_for_url(f"{world.url}/meetings/{meeting_id}/room", timeout=TIMEOUT_MS)
        await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
        await chair.send({"type": "case.next"})
        await page.wait_for_selector("[data-room-decision]:not([hidden]) [data-field='proposal']", timeout=TIMEOUT_MS)
        await page.wait_for_selector("[data-room-quorum][data-met='true']", timeout=TIMEOUT_MS)
        case_id = await page.evaluate("rcpRoom.room.caseId")

        # The surgeon writes the decision and takes responsibility for it.
        await page.select_option("[data-field='proposal'] select", "combined")
        await page.fill(".room-decision .group > label > textarea", "Chimiothérapie néoadjuvante puis lobectomie.")
        await page.select_option("[data-field='guideline'] select", "yes")
        await page.select_option("[data-field='case_status'] select", "discussed")
        await page.check("[data-field='patient_informed'] input[type='checkbox']")
        await page.select_option("[data-field='responsible_physician'] select", str(surgeon_id))
        cookie = {c["name"]: c["value"] for c in await page.context.cookies()}["rcp_session"]
        api = httpx.AsyncClient(base_url=world.url, cookies={"rcp_session": cookie}, timeout=30)

        async def complete() -> bool:
            state = (await api.get(f"/api/cases/{case_id}/decision")).json()
            return not state["missing"] and state["quorum"]["met"]

        await until(complete, "a complete draft", timeout=60)
        sign = "[data-decision] > button.primary"
        await page.wait_for_selector(sign, state="visible", timeout=TIMEOUT_MS)

        # No window open: the page asks to confirm at the provider, goes there and comes back to the room.
        dialogs: list[str] = []

        def accept(dialog: Any) -> None:
            dialogs.append(dialog.type)
            asyncio.ensure_future(dialog.accept())

        page.on("dialog", accept)
        await page.evaluate("window.beforeConfirm = true")  # gone once the page has been left and loaded again
        await page.click(sign)
        await page.wait_for_function("!window.beforeConfirm && window.rcpRoom && window.rcpRoom.socket.seq !== null",
                                     timeout=TIMEOUT_MS)
        assert page.url == f"{world.url}/meetings/{meeting_id}/room"
        assert dialogs == ["confirm"]  # a confirmation, never a password prompt
        asked = [e for e in (await world.provider.log())["log"] if e["endpoint"] == "authorize"][-1]
        assert asked["prompt"] == "login" and asked["max_age"] == "0"

        # Back in the room, within the window: "Sign" signs, nothing asked.
        await page.wait_for_selector(sign, state="visible", timeout=TIMEOUT_MS)
        # (the form has read the draft again: the signature names the revision it saw)
        await page.wait_for_function("rcpRoom.decision() && rcpRoom.decision().revision > 0", timeout=TIMEOUT_MS)
        await page.click(sign)
        await page.wait_for_selector("[data-room-decision][data-signed='true']", timeout=TIMEOUT_MS)
        assert dialogs == ["confirm"]
        state = (await api.get(f"/api/cases/{case_id}/decision")).json()
        [version] = state["versions"]
        assert version["number"] == 1
    finally:
        if api is not None:  # closed on failure too: a socket left open fails a later test on its ResourceWarning
            await api.aclose()
        for client in (chair, *others):
            await client.close()
