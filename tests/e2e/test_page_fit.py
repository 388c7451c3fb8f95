"""Small screens and small things, in headless Chromium (issue 15, item 7).

- The meetings list in French at 800 px: every column header fits its cell (French headers are longer; they
  overlapped the next column), for the coordinator and for a clinician (who also has the "your answer" column).
- Every page names its icon (the favicon), and the icon is served.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.pages import TIMEOUT_MS
from tests.fixtures.browser import NewPage
from tests.room.client import session_cookie
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

#: Headers whose text is wider than their cell, or that overlap their neighbour (measured on the text itself).
HEADER_PROBLEMS = """() => {
    const problems = [];
    for (const row of document.querySelectorAll('table.meetings-table thead tr')) {
        let right = -Infinity;
        for (const th of row.querySelectorAll('th')) {
            const range = document.createRange();
            range.selectNodeContents(th);
            const text = range.getBoundingClientRect();
            const cell = th.getBoundingClientRect();
            if (th.scrollWidth > th.clientWidth + 1 || text.right > cell.right + 1)
                problems.push(`"${th.textContent.trim()}" is wider than its column`);
            if (text.left < right - 1) problems.push(`"${th.textContent.trim()}" overlaps the header before it`);
            right = text.right;
        }
    }
    return problems;
}"""


@pytest.mark.parametrize("username", ["secretariat", "dr.pathologiste"])
async def test_french_meetings_list_fits_800_px(
    imaging_room: tuple[ServerThread, int], new_page: NewPage, tmp_path: Path, username: str
) -> None:
    node, _meeting_id = imaging_room
    cookie = await session_cookie(node.url, username)
    page = await new_page((800, 600), locale="fr-FR")
    name, value = cookie.split("=", 1)
    await page.context.add_cookies([{"name": name, "value": value, "url": node.url}])
    await page.goto(f"{node.url}/meetings")
    await page.wait_for_selector("table.meetings-table", timeout=TIMEOUT_MS)
    assert await page.get_attribute("html", "lang") == "fr"
    problems = await page.evaluate(HEADER_PROBLEMS)
    if problems:
        shot = tmp_path / f"meetings-{username}.png"
        await page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{'; '.join(problems)} (screenshot: {shot})")


async def test_pages_have_a_favicon(imaging_room: tuple[ServerThread, int], new_page: NewPage) -> None:
    node, meeting_id = imaging_room
    page = await new_page((1280, 720))
    await page.goto(f"{node.url}/login")
    href = await page.get_attribute("link[rel='icon']", "href")
    assert href
    response = await page.request.get(f"{node.url}{href}")
    assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")
    # The room too (its own layout, same base page).
    cookie = await session_cookie(node.url, "secretariat")
    name, value = cookie.split("=", 1)
    await page.context.add_cookies([{"name": name, "value": value, "url": node.url}])
    await page.goto(f"{node.url}/meetings/{meeting_id}/room")
    assert await page.get_attribute("link[rel='icon']", "href") == href
