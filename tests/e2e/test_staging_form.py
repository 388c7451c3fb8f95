"""The staging part of the room's decision form in headless Chromium (issue 14, item 3): the agenda's staging
prefilled as written, a ypT0 typed in the pathological field and flagged until its edition is chosen, a nonsense
category refused under its field, laterality and another classification saved as codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from rcp.app import create_app
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service
from tests.servers import ServerThread, until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 30_000
#: Bounds a wait on a save; never an assertion on speed.
WAIT_S = 60.0


@pytest.fixture(scope="module")
async def staging_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, int]]:
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("staging-e2e"))
    node = ServerThread(create_app(settings)).start()
    try:
        yield node, meeting_id
    finally:
        node.close()


async def test_staging_is_typed_as_written_and_flagged_until_its_edition(
    staging_room: tuple[ServerThread, int], new_page: NewPage
) -> None:
    node, meeting_id = staging_room
    chair_cookie = await session_cookie(node.url, "secretariat")
    cookie = await session_cookie(node.url, "dr.oncologue")
    chair = await RoomClient.open(node.url, chair_cookie, meeting_id)
    api = httpx.AsyncClient(base_url=node.url, headers={"Cookie": cookie}, timeout=30)
    try:
        page: Page = await new_page(viewport=(1280, 720), bypass_csp=True)  # playwright evaluates strings
        name, value = cookie.split("=", 1)
        await page.context.add_cookies([{"name": name, "value": value, "url": node.url}])
        await page.goto(f"{node.url}/meetings/{meeting_id}/room")
        await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
        await chair.send({"type": "case.next"})
        clinical = "[data-field='clinical_tnm'] input[type='text']"
        pathological = "[data-field='pathological_tnm'] input[type='text']"
        await page.wait_for_selector(f"[data-room-decision]:not([hidden]) {pathological}", timeout=TIMEOUT_MS)
        case_id = await page.evaluate("rcpRoom.room.caseId")

        # The agenda said "cT1cN0M0 (TNM 8)": shown as written, edition 8, nothing to confirm.
        await page.wait_for_function(f"document.querySelector(\"{clinical}\").value === 'cT1c N0 M0'",
                                     timeout=TIMEOUT_MS)
        assert await page.input_value("[data-field='clinical_tnm'] select") == "8"
        assert not await page.is_visible("[data-field='clinical_tnm'] [data-edition-to-confirm]")

        async def field(name: str) -> Any:
            return (await api.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"][name]["value"]

        # A complete response after neoadjuvant treatment, typed compactly: saved as written, flagged without edition.
        await page.fill(pathological, "ypT0N0M0")
        await page.wait_for_selector("[data-field='pathological_tnm'] [data-edition-to-confirm]", state="visible",
                                     timeout=TIMEOUT_MS)
        saved = await until(field_is(field, "pathological_tnm", lambda v: v and v["text"] == "ypT0N0M0"),
                            "the pathological staging saved", timeout=WAIT_S, interval=0.2)
        assert saved["edition"] == ""
        missing = (await api.get(f"/api/cases/{case_id}/decision")).json()["missing"]
        assert "pathological_tnm.edition" in missing
        await page.select_option("[data-field='pathological_tnm'] select", "8")
        await until(field_is(field, "pathological_tnm", lambda v: v and v["edition"] == "8"),
                    "the edition saved", timeout=WAIT_S, interval=0.2)
        assert not await page.is_visible("[data-field='pathological_tnm'] [data-edition-to-confirm]")

        # Nonsense is refused under its field, with the rule; the stored value stays the agenda's.
        await page.fill(clinical, "cT9N0M0")
        await page.wait_for_selector("[data-field='clinical_tnm'].has-error", timeout=TIMEOUT_MS)
        assert "T category" in await page.inner_text("[data-field='clinical_tnm'] .field-status")
        assert await field("clinical_tnm") is None or "T9" not in str(await field("clinical_tnm"))

        # Laterality and another classification, as codes.
        await page.select_option("[data-field='laterality'] select", "left")
        await until(field_is(field, "laterality", lambda v: v == "left"), "the laterality saved", timeout=WAIT_S,
                    interval=0.2)
        await page.click("[data-add-classification]")
        row = "[data-field='other_classifications'] .classification-row"
        await page.select_option(f"{row} select", "figo")
        await page.fill(f"{row} input", "IB2")
        await until(field_is(field, "other_classifications", lambda v: v == [{"system": "figo", "value": "IB2"}]),
                    "the classification saved", timeout=WAIT_S, interval=0.2)
    finally:
        await chair.close()
        await api.aclose()


def field_is(read: Any, name: str, test: Any) -> Any:
    async def check() -> Any:
        value = await read(name)
        return value if test(value) else None

    return check
