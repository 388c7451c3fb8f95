"""Issue 15, item 3 in headless Chromium: an empty decision draft shows no value nobody gave.

The room's form used to display "Proposal: Surgery" (and "Case status: Discussed") for a case whose draft holds no
proposal, while its own summary listed the proposal as missing; the server's draft said "discussed" before anyone
did. Here the agenda of the demo meeting is emptied (no
question, summary, staging or performance status to prefill), a participant opens the first case, and every field
of the decision form is walked: no text, no selected option with a label, no ticked box, no classification row;
focusing and leaving each control saves nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from playwright.async_api import Page, Request
from sqlmodel import col

from rcp.app import create_app
from rcp.db import Database
from rcp.scheduling.models import Case
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 30_000
FORM = "[data-room-decision]"


@pytest.fixture(scope="module")
async def empty_agenda_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, int]]:
    """The demo service with the scheduled meeting's agenda emptied: its drafts start with nothing in them."""
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("empty-decision-e2e"))
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            await s.exec(sa.update(Case).where(col(Case.meeting_id) == meeting_id).values(
                question="", clinical_summary="", staging="", performance_status=None))
            await s.commit()
    finally:
        await db.close()
    node = ServerThread(create_app(settings)).start()
    try:
        yield node, meeting_id
    finally:
        node.close()


#: Every control of the form and what it displays: value, the selected option's label, whether it is ticked.
SHOWN = f"""() => [...document.querySelectorAll("{FORM} [data-field] :is(input, textarea, select)")].map((c) => ({{
  field: c.closest('[data-field]').dataset.field, tag: c.tagName, type: c.type || '',
  value: c.type === 'checkbox' ? '' : c.value, checked: c.type === 'checkbox' && c.checked,
  label: c.tagName === 'SELECT' ? (c.selectedOptions[0]?.textContent ?? '') : '' }}))"""


async def test_an_empty_draft_shows_no_value_and_saves_nothing(
    empty_agenda_room: tuple[ServerThread, int], new_page: NewPage
) -> None:
    node, meeting_id = empty_agenda_room
    chair = await RoomClient.open(node.url, await session_cookie(node.url, "secretariat"), meeting_id)
    cookie = await session_cookie(node.url, "dr.oncologue")
    api = httpx.AsyncClient(base_url=node.url, headers={"Cookie": cookie}, timeout=30)
    try:
        page: Page = await new_page(viewport=(1280, 720), bypass_csp=True)  # playwright evaluates strings
        name, value = cookie.split("=", 1)
        await page.context.add_cookies([{"name": name, "value": value, "url": node.url}])
        sent: list[str] = []

        def record(request: Request) -> None:
            if request.method != "GET" and "/decision" in request.url:
                sent.append(f"{request.method} {request.url}")

        page.on("request", record)
        await page.goto(f"{node.url}/meetings/{meeting_id}/room")
        await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
        await chair.send({"type": "case.next"})
        await page.wait_for_selector(f"{FORM}:not([hidden]) [data-field='proposal'] select", timeout=TIMEOUT_MS)
        case_id = await page.evaluate("rcpRoom.room.caseId")
        state = (await api.get(f"/api/cases/{case_id}/decision")).json()
        assert "proposal" in state["missing"], state["missing"]
        # The form has loaded the draft (the responsible physician's list comes with it).
        await page.wait_for_function(
            f"document.querySelectorAll(\"{FORM} [data-field='responsible_physician'] option\").length > 1",
            timeout=TIMEOUT_MS)

        controls = await page.evaluate(SHOWN)
        fields = {c["field"] for c in controls}
        for expected in ("question", "clinical_summary", "diagnosis_date", "laterality", "clinical_tnm",
                         "pathological_tnm", "proposal", "guideline", "clinical_trial", "case_status",
                         "responsible_physician", "patient_informed", "gp", "comments"):
            assert expected in fields, f"{expected} is not on the form"
        # The server invents nothing either (rcp.minutes.fiche.DRAFT_DEFAULTS): no "discussed" status until someone
        # says so, and signing asks for it; the "Still missing" list names it.
        assert state["draft"]["fields"]["case_status"]["value"] is None
        assert state["draft"]["fields"]["proposal"]["value"] is None
        assert "case_status" in state["missing"], state["missing"]
        shown = [c for c in controls if c["value"] or c["checked"] or c["label"].strip()]
        assert shown == [], f"an empty draft displays values nobody gave: {shown}"
        assert await page.locator(f"{FORM} .classification-row").count() == 0
        assert await page.locator(f"{FORM} [data-field='correspondents'] .physician-row").count() == 0

        # Walking through every control without typing anything records nothing.
        for index in range(len(controls)):
            control = page.locator(f"{FORM} [data-field] :is(input, textarea, select)").nth(index)
            await control.focus()
            await control.blur()
        await page.wait_for_timeout(1500)  # the form's save debounce is 800 ms: past it, nothing may have left
        assert sent == [], f"an untouched form sent {sent}"
        after = (await api.get(f"/api/cases/{case_id}/decision")).json()
        assert after["draft"]["revision"] == state["draft"]["revision"] == 0
    finally:
        await chair.close()
        await api.aclose()
