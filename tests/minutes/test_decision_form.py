"""decision.js in headless Chromium against the real minutes routes: saves, a visible conflict, live edits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rcp import i18n
from rcp.db import Database, migrate
from rcp.http import error_handlers
from rcp.minutes import store
from rcp.minutes.routes import routes
from rcp.room.routes import proposal_choices
from rcp.templating import WEB_DIR, render_error, templates
from tests.minutes.header_auth import HeaderAuth
from tests.minutes.seeding import Seed, seed
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser]

PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="csrf-token" content=""></head>
<body><div data-toast hidden></div><section data-decision></section>{strings}
<script type="module">
import {{ mountDecision }} from '/static/js/decision.js';
window.decisionForm = mountDecision(document.querySelector('[data-decision]'), {{ caseId: {case_id} }});
</script></body></html>"""


def make_app(url: str) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.db = Database(url)  # the server thread's own loop owns its engine
        try:
            yield
        finally:
            await app.state.db.close()

    async def page(request: Request) -> HTMLResponse:
        # The form's texts come from the room's table of strings (no English fallback in decision.js), in English.
        i18n.current_locale.set("en")
        strings = templates.env.get_template("room_strings.html").render(proposals=proposal_choices())
        return HTMLResponse(PAGE.format(case_id=int(request.path_params["case_id"]), strings=strings))

    return Starlette(
        routes=[*routes, Route("/test/decision/{case_id:int}", page),
                Mount("/static", StaticFiles(directory=Path(WEB_DIR) / "static"))],
        middleware=[Middleware(HeaderAuth)], exception_handlers=error_handlers(render_error), lifespan=lifespan,
    )


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('decision-form') / 'rcp.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="module")
def server(sqlite_url: str) -> Iterator[ServerThread]:
    thread = ServerThread(make_app(sqlite_url))
    thread.start()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(sqlite_url)
    yield db
    await db.close()


async def question(db: Database, seeded: Seed) -> tuple[str, int]:
    async with db.session() as s:
        field = (await store.load_draft(s, seeded.case_id)).get("question")
    return field.value, field.version


async def wait_for(db: Database, seeded: Seed, expected: str) -> int:
    for _ in range(100):
        value, version = await question(db, seeded)
        if value == expected:
            return version
        await asyncio.sleep(0.05)
    raise AssertionError(f"question never became {expected!r} (is {value!r})")


async def test_decision_form_saves_shows_conflicts_and_live_edits(new_page, server: ServerThread,  # type: ignore[no-untyped-def]
                                                                  database: Database) -> None:
    seeded = await seed(database)
    page = await new_page(extra_http_headers={"X-Test-User": str(seeded.surgeon)}, fail_on_error=True)
    await page.goto(f"{server.url}/test/decision/{seeded.case_id}")
    area = page.locator('[data-field="question"] textarea')
    await page.wait_for_function("document.querySelector('[data-field=question] textarea').value === 'Opérable ?'")

    # Typing saves (debounced) with the field's version.
    await area.fill("Chirurgie d'emblée ?")
    await area.blur()
    assert await wait_for(database, seeded, "Chirurgie d'emblée ?") == 1

    # Someone else saves the same field; our next edit is based on version 1 and meets a visible conflict.
    async with httpx.AsyncClient(base_url=server.url, headers={"X-Test-User": str(seeded.oncologist)}) as other:
        answer = await other.put(f"/api/cases/{seeded.case_id}/decision/fields/question",
                                 json={"value": "Radiothérapie exclusive ?", "base_version": 1})
        assert answer.status_code == 200
    await area.fill("Chirurgie après chimiothérapie ?")
    await area.blur()
    conflict = page.locator('[data-field="question"] .field-conflict')
    await conflict.wait_for(state="visible")
    text = await conflict.inner_text()
    assert "Radiothérapie exclusive ?" in text and "Chirurgie après chimiothérapie ?" in text
    assert (await question(database, seeded))[0] == "Radiothérapie exclusive ?"  # nothing overwritten silently
    await conflict.get_by_role("button", name="Use mine").click()
    assert await wait_for(database, seeded, "Chirurgie après chimiothérapie ?") == 3
    await conflict.wait_for(state="hidden")

    # An edit by another participant, announced by the room, shows up in an untouched field.
    await page.evaluate(
        """(caseId) => document.dispatchEvent(new CustomEvent('rcp:decision-field', {detail: {
             case_id: caseId, name: 'comments', value: 'Bilan cardiaque avant chirurgie.', version: 1}}))""",
        seeded.case_id)
    assert await page.locator('[data-field="comments"] textarea').input_value() == "Bilan cardiaque avant chirurgie."
