"""Issue 14, item 6 in headless Chromium: radiotherapy proposed without a radiation oncologist is flagged in the
room's decision form and in the sign dialog, and the signature is refused.

The demo's thoracic board is set to require a surgeon and a medical oncologist only (its coordinator's charter);
the surgeon and the radiologist are in the room as scripted participants, the oncologist in the browser, so the
quorum (three physician specialties, the required ones among them) is met and only the treatment rule stands in
the way. No wall-clock assertions: waits only bound hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Dialog

from rcp.app import create_app
from rcp.config import Settings
from rcp.demo import DEMO_PASSWORD
from tests.factories import credentials
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service
from tests.servers import ServerThread, until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 30_000
WAIT_S = 60.0


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, Settings, int]]:
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("treatment-flag-e2e"))
    node = ServerThread(create_app(settings)).start()
    try:
        yield node, settings, meeting_id
    finally:
        node.close()


async def test_radiotherapy_without_a_radiotherapist_is_flagged_before_signature(
    served: tuple[ServerThread, Settings, int], new_page: NewPage
) -> None:
    node, _settings, meeting_id = served
    names = ("secretariat", "dr.chirurgien", "dr.radiologue", "dr.oncologue")
    cookies = {n: await session_cookie(node.url, n) for n in names}
    coordinator = httpx.AsyncClient(base_url=node.url, timeout=30)
    signed_in = (await coordinator.post("/api/session", json=credentials("secretariat"))).json()
    coordinator.headers["X-CSRF-Token"] = signed_in["csrf_token"]
    board_id = (await coordinator.get(f"/api/meetings/{meeting_id}")).json()["board_id"]
    charter = await coordinator.patch(f"/api/boards/{board_id}",
                                      json={"required_specialties": ["surgeon", "medical_oncologist"]})
    assert charter.status_code == 200, charter.text
    present = [await RoomClient.open(node.url, cookies[n], meeting_id) for n in ("secretariat", "dr.chirurgien",
                                                                                 "dr.radiologue")]
    try:
        page = await new_page(viewport=(1280, 720), bypass_csp=True)
        name, value = cookies["dr.oncologue"].split("=", 1)
        await page.context.add_cookies([{"name": name, "value": value, "url": node.url}])
        await page.goto(f"{node.url}/meetings/{meeting_id}/room")
        await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
        me = await page.evaluate("rcpRoom.socket.welcome.user_id")
        await present[0].send({"type": "case.next"})  # the chair opens the first case
        await page.wait_for_selector("[data-room-decision]:not([hidden]) [data-field='proposal']",
                                     timeout=TIMEOUT_MS)
        case_id = await page.evaluate("rcpRoom.room.caseId")

        await page.select_option("[data-field='proposal'] select", "radiotherapy")
        await page.fill(".room-decision .group > label > textarea", "Radiothérapie stéréotaxique, 3 × 18 Gy.")
        await page.select_option("[data-field='guideline'] select", "yes")
        await page.select_option("[data-field='case_status'] select", "discussed")
        await page.check("[data-field='patient_informed'] input[type='checkbox']")
        await page.select_option("[data-field='responsible_physician'] select", str(me))

        async def complete() -> bool:
            state = (await coordinator.get(f"/api/cases/{case_id}/decision")).json()
            return not state["missing"] and state["quorum"]["met"] and bool(state.get("treatment_gaps"))

        await until(complete, "a complete draft whose quorum is met", timeout=WAIT_S, interval=0.2)
        await page.evaluate("rcpRoom.decision().refresh()")
        flag = page.locator("[data-decision] [data-treatment-gap]")
        await flag.wait_for(timeout=TIMEOUT_MS)
        assert "radiation oncologist" in (await flag.inner_text()).lower()

        # The sign dialog says it first; signing anyway is refused by the server, and nothing is signed.
        dialogs: list[str] = []

        def answer(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            asyncio.ensure_future(dialog.accept(DEMO_PASSWORD))

        page.once("dialog", answer)
        await page.click("[data-decision] > button.primary")
        await until(lambda: dialogs, "the sign dialog", timeout=WAIT_S)
        assert "radiation oncologist" in dialogs[0].lower() and "cannot be signed" in dialogs[0]
        await page.get_by_text("treatment it proposes").first.wait_for(timeout=TIMEOUT_MS)  # the refusal's toast
        state = (await coordinator.get(f"/api/cases/{case_id}/decision")).json()
        assert state["versions"] == []
    finally:
        for client in present:
            await client.close()
        await coordinator.aclose()
