"""The GP and correspondents of the room's decision form in headless Chromium (issue 16, item 8).

The signed fiche's copy goes by secure mail to the patient's GP and to the correspondents named on it
(rcp.minutes.copies), which only an API call could name before. A physician of the meeting, in a French room, types
the GP with an MSSanté address and adds a correspondent: the draft on the server holds both (read back through the
API). An address outside MSSanté is refused under its field in French, and the stored GP stays the good one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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
GP = "[data-field='gp']"
CORRESPONDENTS = "[data-field='correspondents']"


@pytest.fixture(scope="module")
async def gp_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, int]]:
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("gp-form-e2e"))
    node = ServerThread(create_app(settings)).start()
    try:
        yield node, meeting_id
    finally:
        node.close()


async def test_the_gp_and_a_correspondent_are_typed_in_the_room_and_saved(
    gp_room: tuple[ServerThread, int], new_page: NewPage
) -> None:
    node, meeting_id = gp_room
    chair = await RoomClient.open(node.url, await session_cookie(node.url, "secretariat"), meeting_id)
    cookie = await session_cookie(node.url, "dr.oncologue")
    api = httpx.AsyncClient(base_url=node.url, headers={"Cookie": cookie}, timeout=30)
    try:
        page: Page = await new_page(viewport=(1280, 720), bypass_csp=True)  # playwright evaluates strings
        name, value = cookie.split("=", 1)
        await page.context.add_cookies([{"name": name, "value": value, "url": node.url},
                                        {"name": "rcp_locale", "value": "fr", "url": node.url}])
        await page.goto(f"{node.url}/meetings/{meeting_id}/room")
        await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
        await chair.send({"type": "case.next"})
        await page.wait_for_selector(f"[data-room-decision]:not([hidden]) {GP} [data-part='email']",
                                     timeout=TIMEOUT_MS)
        case_id = await page.evaluate("rcpRoom.room.caseId")

        async def field(name: str) -> Any:
            return (await api.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"][name]["value"]

        def saved(name: str, test: Callable[[Any], bool]) -> Callable[[], Any]:
            """The field's value in a 1-tuple once ``test`` holds (an empty list is a value ``until`` waits for)."""
            async def check() -> Any:
                value = await field(name)
                return (value,) if test(value) else None
            return check

        # Nobody is named yet: the inputs are empty, not filled with an example.
        assert await field("gp") is None
        for part in ("name", "rpps", "email"):
            assert await page.input_value(f"{GP} [data-part='{part}']") == ""

        await page.fill(f"{GP} [data-part='name']", "Dr Anne GIRAUD")
        await page.fill(f"{GP} [data-part='rpps']", "10003456781")
        await page.fill(f"{GP} [data-part='email']", "anne.giraud@medecin.mssante.fr")
        (gp,) = await until(saved("gp", lambda v: bool(v) and v["email"] == "anne.giraud@medecin.mssante.fr"),
                           "the GP saved", timeout=WAIT_S, interval=0.2)
        assert (gp["name"], gp["rpps"]) == ("Dr Anne GIRAUD", "10003456781")

        await page.click("[data-add-correspondent]")
        row = f"{CORRESPONDENTS} .physician-row"
        await page.fill(f"{row} [data-part='name']", "Dr Julien MOREAU")
        await page.fill(f"{row} [data-part='email']", "julien.moreau@ch-villefranche.mssante.fr")
        (people,) = await until(saved("correspondents", lambda v: len(v) == 1 and v[0]["email"].endswith(".mssante.fr")),
                                "the correspondent saved", timeout=WAIT_S, interval=0.2)
        assert people[0]["name"] == "Dr Julien MOREAU" and people[0]["rpps"] == ""

        # An ordinary mailbox is refused under the GP's field, in the page's language; the stored GP is unchanged.
        await page.fill(f"{GP} [data-part='email']", "anne.giraud@gmail.com")
        await page.wait_for_selector(f"{GP}.has-error", timeout=TIMEOUT_MS)
        message = await page.inner_text(f"{GP} .field-status")
        assert "adresse MSSanté est attendue" in message, message
        assert (await field("gp"))["email"] == "anne.giraud@medecin.mssante.fr"

        # Removing the correspondent empties the list on the server.
        await page.click(f"{row} button")
        await until(saved("correspondents", lambda v: v == []), "the correspondent removed", timeout=WAIT_S,
                    interval=0.2)
    finally:
        await chair.close()
        await api.aclose()
