"""The live room's layout in headless Chromium.

- Prior vs current side by side: the radiologist presents a case with two CT studies in a 1x2 layout (current
  left, prior right) and scrolls the prior only; a follower shows the same series, slice and window in the same
  viewport, the pointer over the right viewport lands on the same pixel of the right viewport, and a follower who
  browses freely snaps back (both viewports) when it follows again.
- Images first (issue 15, item 1): at 800x600, 1024x768 (a tablet in landscape), 1280x720, 1920x1080 and
  3840x2160 a participant arriving in the room has the viewer's canvases fully inside the window, the patient's
  identity banner beside them, the page not scrolling, and the speaker's video tile on screen and playing at the
  same time. A failed size leaves a screenshot, named in the assertion message.
- The chair sees a floor request (issue 15, item 6) at 1280x720 with another panel open, and gives the floor with
  one click on the notification.
- "?" opens the list of keyboard shortcuts; the panels open from the keyboard.

No wall-clock assertions: waits only bound hanging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.e2e.pages import TIMEOUT_MS, open_room
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SAME_VIEWPORTS = """([layout, expected]) => {
    const s = rcpRoom.viewer.getState();
    return s.layout === layout && expected.every((e, i) => {
        const vp = s.viewports[i];
        return vp.seriesUid === e.seriesUid && vp.index === e.index && JSON.stringify(vp.window) === JSON.stringify(e.window);
    });
}"""


async def shown(page: Page, count: int) -> list[dict[str, Any]]:
    viewports: list[dict[str, Any]] = await page.evaluate(
        f"rcpRoom.viewer.getState().viewports.slice(0, {count})"
    )
    return [{"seriesUid": v["seriesUid"], "index": v["index"], "window": v["window"]} for v in viewports]


async def test_side_by_side_prior_and_current_follow_the_presenter(
    imaging_room: tuple[ServerThread, int],
    new_page: NewPage,
) -> None:
    node, meeting_id = imaging_room
    cookies = {
        n: await session_cookie(node.url, n) for n in ("secretariat", "dr.radiologue", "dr.chirurgien")
    }
    chair = await RoomClient.open(node.url, cookies["secretariat"], meeting_id)
    try:
        presenter = await open_room(new_page, node.url, cookies["dr.radiologue"], meeting_id, (1280, 720))
        follower = await open_room(new_page, node.url, cookies["dr.chirurgien"], meeting_id, (1024, 700))

        # The coordinator opens a case with a prior and a current CT and hands the floor to the radiologist.
        agenda = await presenter.evaluate(
            "JSON.parse(document.getElementById('room-data').textContent).agenda"
        )
        case = next(c for c in agenda if len(c["study_uids"]) >= 2)
        await chair.send({"type": "case.set", "case_id": case["id"]})
        radiologist = await presenter.evaluate("rcpRoom.socket.welcome.user_id")
        await chair.send({"type": "floor.handover", "to": radiologist})
        await presenter.wait_for_function(
            """(caseId) => rcpRoom.room.caseId === caseId && rcpRoom.room.presenter === rcpRoom.socket.welcome.user_id
                && rcpRoom.viewer.getState().viewports[0].seriesUid""",
            arg=case["id"],
            timeout=TIMEOUT_MS,
        )
        await presenter.evaluate("rcpRoom.viewer.settled()")

        # Side by side: the other study's first series on the right, scrolled on its own, lung window on the left.
        await presenter.evaluate(
            """async (studyUid) => {
                const series = await (await fetch(`/api/imaging/studies/${encodeURIComponent(studyUid)}/series`)).json();
                rcpRoom.viewer.setLayout('1x2');
                await rcpRoom.viewer.loadSeries(1, series[0].url);
                rcpRoom.viewer.scrollTo(5, 0);
                rcpRoom.viewer.scrollTo(17, 1);
                rcpRoom.viewer.applyPreset('lung', 0);
                await rcpRoom.viewer.settled();
            }""",
            case["study_uids"][1],
        )
        expected = await shown(presenter, 2)
        assert expected[1]["index"] == 17 and expected[0]["index"] == 5
        assert expected[0]["seriesUid"] != expected[1]["seriesUid"]
        await follower.wait_for_function(SAME_VIEWPORTS, arg=["1x2", expected], timeout=TIMEOUT_MS)
        # Drawn too: the follower's right viewport shows the prior's slice (not only holds it in its state).
        await follower.evaluate("rcpRoom.viewer.settled()")
        right = await follower.evaluate("rcpRoom.viewer.seriesFor(1).meta.series_uid")
        assert right == expected[1]["seriesUid"]

        # The presenter points over the right viewport: the follower's pointer is on the same pixel of viewport 1.
        box = await presenter.evaluate(
            "(() => { const r = document.querySelector('[data-viewport=\"1\"]').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        x, y = box[0] + box[2] * 0.45, box[1] + box[3] * 0.55
        await presenter.mouse.move(x - 5, y - 5)
        await presenter.mouse.move(x, y)
        target = await presenter.evaluate(f"rcpRoom.viewer.clientToImage({x}, {y})")
        assert target["viewport"] == 1
        await follower.wait_for_function(
            """([col, row]) => {
                const p = rcpRoom.pointer.latest;
                return p && p.viewport === 1 && Math.abs(p.column - col) <= 0.05 && Math.abs(p.row - row) <= 0.05;
            }""",
            arg=[target["x"], target["y"]],
            timeout=TIMEOUT_MS,
        )
        back = await follower.evaluate(
            """() => {
                const p = rcpRoom.pointer.latest;
                const c = rcpRoom.viewer.imageToClient(p.column, p.row, p.viewport);
                return rcpRoom.viewer.clientToImage(c.x, c.y);
            }"""
        )
        assert back["viewport"] == 1
        assert int(back["x"]) == int(target["x"]) and int(back["y"]) == int(target["y"])

        # The follower browses freely (back to one viewport), the presenter scrolls the prior further; on
        # "Follow" the follower is back to 1x2 with both viewports as the presenter's.
        await follower.click("[data-room-action='free']")
        await follower.wait_for_function(
            "rcpRoom.room.participants.get(rcpRoom.socket.welcome.user_id).mode === 'free'",
            timeout=TIMEOUT_MS,
        )
        await follower.evaluate("rcpRoom.viewer.setLayout('1x1'); rcpRoom.viewer.scrollTo(2, 0)")
        await presenter.evaluate("rcpRoom.viewer.scrollTo(22, 1)")
        await chair.wait_for(
            lambda c: any(
                e["view"]["others"] and e["view"]["others"][0]["slice"] == 22 for e in c.of("view.changed")
            )
        )
        assert (await follower.evaluate("rcpRoom.viewer.getState().layout")) == "1x1"
        await follower.click("[data-room-action='follow']")
        expected = await shown(presenter, 2)
        assert expected[1]["index"] == 22
        await follower.wait_for_function(SAME_VIEWPORTS, arg=["1x2", expected], timeout=TIMEOUT_MS)
    finally:
        await chair.close()


# -- images first ------------------------------------------------------------------------------------------------
#: What must hold on arrival, measured in the page: the problems found (an empty list when all is well).
ARRIVAL_PROBLEMS = """(caseId) => {
    const problems = [];
    const W = innerWidth, H = innerHeight;
    const inside = (r) => r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= W + 0.5 && r.bottom <= H + 0.5;
    const seen = (el) => { const r = el.getBoundingClientRect();
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return hit !== null && (el === hit || el.contains(hit)); };
    const root = document.scrollingElement;
    if (root.scrollHeight > H + 1 || root.scrollWidth > W + 1 || scrollY !== 0)
        problems.push(`the page scrolls: ${root.scrollWidth}x${root.scrollHeight} in ${W}x${H}`);
    const canvases = [...document.querySelectorAll('[data-viewer-grid] canvas')].filter((c) => c.offsetParent !== null);
    if (!canvases.length) problems.push('no viewer canvas shown');
    for (const c of canvases) {
        const r = c.getBoundingClientRect();
        if (!inside(r)) problems.push(`canvas at ${JSON.stringify(r)} not fully inside ${W}x${H}`);
        if (r.width < W / 3 || r.height < H / 3) problems.push(`canvas only ${r.width}x${r.height} in ${W}x${H}`);
    }
    const banner = document.querySelector(`[data-identity-case="${caseId}"]`);
    if (!banner || banner.hidden) problems.push('no identity banner for the current case');
    else {
        const r = banner.getBoundingClientRect();
        if (!inside(r) || !seen(banner)) problems.push(`identity banner not on screen: ${JSON.stringify(r)}`);
        const viewer = document.querySelector('[data-rcp-viewer]').getBoundingClientRect();
        if (r.bottom > viewer.top + 1 || viewer.top - r.bottom > 40)
            problems.push('identity banner not right above the images');
        if (!banner.querySelector('.family').textContent.trim()) problems.push('no birth name in the banner');
        if (!banner.querySelector('[data-identity-status]')) problems.push('no identity status in the banner');
    }
    return problems;
}"""

TILE_ON_SCREEN = """(id) => {
    const tile = document.querySelector(`figure.rtc-tile[data-participant="${id}"]`);
    if (!tile) return 'no tile';
    const r = tile.getBoundingClientRect();
    if (r.width < 40 || r.left < 0 || r.top < 0 || r.right > innerWidth + 0.5 || r.bottom > innerHeight + 0.5)
        return `tile at ${JSON.stringify(r)} not inside ${innerWidth}x${innerHeight}`;
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || !tile.contains(hit)) return `tile covered by ${hit && hit.outerHTML.slice(0, 80)}`;
    const video = tile.querySelector('video');
    if (video.paused || tile.classList.contains('rtc-paused')) return 'video paused';
    return '';
}"""


async def screenshot_on_failure(page: Page, path: Path, problem: str) -> AssertionError:
    await page.screenshot(path=str(path))
    return AssertionError(f"{problem} (screenshot: {path})")


@pytest.mark.timeout(600)
async def test_images_first_at_every_size(
    imaging_room: tuple[ServerThread, int], new_page: NewPage, tmp_path: Path
) -> None:
    node, meeting_id = imaging_room
    cookies = {n: await session_cookie(node.url, n) for n in ("secretariat", "dr.chirurgien", "dr.radiologue")}
    chair = await RoomClient.open(node.url, cookies["secretariat"], meeting_id)
    try:
        # The surgeon presents a case with images, and speaks: the only live microphone, so the room elects him.
        surgeon = await open_room(new_page, node.url, cookies["dr.chirurgien"], meeting_id, (1280, 720))
        surgeon_id = await surgeon.evaluate("rcpRoom.socket.welcome.user_id")
        agenda = await surgeon.evaluate("JSON.parse(document.getElementById('room-data').textContent).agenda")
        case = next(c for c in agenda if c["study_uids"] and c["state"] != "deferred")
        await chair.send({"type": "case.set", "case_id": case["id"]})
        await chair.send({"type": "floor.handover", "to": surgeon_id})
        await surgeon.wait_for_function(
            "(caseId) => rcpRoom.room.caseId === caseId && rcpRoom.room.view.series_uid",
            arg=case["id"], timeout=TIMEOUT_MS,
        )
        for size in ((800, 600), (1024, 768), (1280, 720), (1920, 1080), (3840, 2160)):  # 1024x768: a tablet
            page = await open_room(new_page, node.url, cookies["dr.radiologue"], meeting_id, size)
            shot = tmp_path / f"room-{size[0]}x{size[1]}.png"
            try:
                await page.wait_for_function(
                    "(uid) => rcpRoom.viewer.getState().viewports[0].seriesUid === uid",
                    arg=await surgeon.evaluate("rcpRoom.room.view.series_uid"), timeout=TIMEOUT_MS,
                )
                await page.evaluate("rcpRoom.viewer.settled()")
                problems = await page.evaluate(ARRIVAL_PROBLEMS, case["id"])
                if problems:
                    raise await screenshot_on_failure(page, shot, f"{size}: " + "; ".join(problems))
                # The speaker's tile, on screen at the same time and playing (its picture advancing).
                await page.click('[data-video-action="mic"]')
                try:
                    await page.wait_for_function(
                        "(id) => rcpRoom.media.featured === String(id)", arg=surgeon_id, timeout=TIMEOUT_MS
                    )
                    tile = f'figure.rtc-tile[data-participant="{surgeon_id}"]'
                    await page.wait_for_selector(f"{tile}.rtc-featured.rtc-speaking", timeout=TIMEOUT_MS)
                    await page.wait_for_function(f"!({TILE_ON_SCREEN})({surgeon_id})", timeout=TIMEOUT_MS)
                    start = await page.evaluate(f"document.querySelector('{tile} video').currentTime")
                    await page.wait_for_function(
                        f"document.querySelector('{tile} video').currentTime > {start} + 0.5", timeout=TIMEOUT_MS
                    )
                except PlaywrightTimeout:
                    problem = await page.evaluate(f"({TILE_ON_SCREEN})({surgeon_id})")
                    raise await screenshot_on_failure(
                        page, shot, f"{size}: the speaker's tile is not on screen and playing: {problem or 'not elected'}"
                    ) from None
                # Still true with the tile playing: the images did not move.
                problems = await page.evaluate(ARRIVAL_PROBLEMS, case["id"])
                if problems:
                    raise await screenshot_on_failure(page, shot, f"{size}, later: " + "; ".join(problems))
            finally:
                await page.context.close()
    finally:
        await chair.close()


async def test_chair_sees_and_grants_a_floor_request(
    imaging_room: tuple[ServerThread, int], new_page: NewPage, tmp_path: Path
) -> None:
    node, meeting_id = imaging_room
    cookies = {n: await session_cookie(node.url, n) for n in ("secretariat", "dr.radiologue", "dr.oncologue")}
    presenter = await RoomClient.open(node.url, cookies["dr.radiologue"], meeting_id)
    asker = await RoomClient.open(node.url, cookies["dr.oncologue"], meeting_id)
    try:
        chair = await open_room(new_page, node.url, cookies["secretariat"], meeting_id, (1280, 720))
        radiologist = presenter.welcome["user_id"]
        oncologist = asker.welcome["user_id"]
        await chair.evaluate(f"rcpRoom.socket.send({{type: 'floor.handover', to: {radiologist}}})")
        await asker.wait_for(lambda c: any(e["user_id"] == radiologist for e in c.of("floor.granted")))
        # The chair is elsewhere: in the decision tab, scrolled to its end.
        await chair.click('[role="tab"][data-tab="decision"]')
        await chair.evaluate("document.querySelector('[data-room-drawer]').scrollTop = 1e6")
        await asker.send({"type": "floor.request"})
        alert = f'[data-floor-request="{oncologist}"]'
        try:
            await chair.wait_for_selector(alert, state="visible", timeout=TIMEOUT_MS)
            # On screen (once it has slid in), on top of everything there, and saying who asks.
            handle = await chair.wait_for_function(
                f"""() => {{ const a = document.querySelector('{alert}'); const r = a.getBoundingClientRect();
                    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
                    return r.top >= 0 && r.bottom <= innerHeight && a.contains(hit) && a.textContent; }}""",
                timeout=TIMEOUT_MS,
            )
            on_screen = await handle.json_value()
            assert "asks for the floor" in on_screen, on_screen
            # The participants tab counts the request too.
            assert await chair.text_content('[data-tab="people"] [data-request-count]') == "1"
        except (AssertionError, PlaywrightTimeout) as error:
            raise await screenshot_on_failure(
                chair, tmp_path / "floor-request.png", f"no visible floor request: {error}"
            ) from None
        # One click gives the floor; the notification goes.
        await chair.click(f"{alert} button[data-floor='give']")
        await asker.wait_for(lambda c: any(e["user_id"] == oncologist for e in c.of("floor.granted")))
        await chair.wait_for_selector(alert, state="detached", timeout=TIMEOUT_MS)
        assert await chair.evaluate(f"rcpRoom.room.presenter === {oncologist}")
        # The sound is offered to the chair, off until turned on; then a new request rings.
        sound = '[data-room-action="floor-sound"]'
        assert await chair.get_attribute(sound, "aria-pressed") == "false"
        await chair.click(sound)
        assert await chair.get_attribute(sound, "aria-pressed") == "true"
        rung = await chair.evaluate("rcpRoom.alerts.rung")
        await presenter.send({"type": "floor.request"})
        await chair.wait_for_selector(f'[data-floor-request="{radiologist}"]', state="visible", timeout=TIMEOUT_MS)
        await chair.wait_for_function(f"rcpRoom.alerts.rung > {rung}", timeout=TIMEOUT_MS)
    finally:
        await asker.close()
        await presenter.close()


async def test_keyboard_shortcuts_and_panels(imaging_room: tuple[ServerThread, int], new_page: NewPage) -> None:
    node, meeting_id = imaging_room
    cookie = await session_cookie(node.url, "dr.pathologiste")
    page = await open_room(new_page, node.url, cookie, meeting_id, (800, 600))
    # "?" opens the list; it names the room's and the viewer's keys.
    await page.keyboard.press("Shift+?")
    await page.wait_for_selector("[data-room-help][open]", timeout=TIMEOUT_MS)
    keys = await page.evaluate(
        "[...document.querySelectorAll('[data-room-help] kbd')].map((k) => k.textContent.trim())"
    )
    for key in ("?", "Esc", "V", "A", "C", "D", "P", "M", "G", "F", "I", "R", "L"):
        assert key in keys, f"{key} missing from the shortcuts: {keys}"
    await page.keyboard.press("Escape")
    await page.wait_for_selector("[data-room-help]:not([open])", state="attached", timeout=TIMEOUT_MS)
    # At 800x600 "P" opens the participants as a drawer over the images, with the focus in it; Esc closes it.
    await page.keyboard.press("p")
    await page.wait_for_selector("#room-panel-people", state="visible", timeout=TIMEOUT_MS)
    assert await page.evaluate("document.activeElement.id") == "room-panel-people"
    assert await page.get_attribute('[data-tab="people"]', "aria-selected") == "true"
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#room-panel-people", state="hidden", timeout=TIMEOUT_MS)
    assert await page.evaluate("document.activeElement.dataset.tab") == "people"
    # The tabs move with the arrow keys; "V" puts the focus on the images.
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate("document.activeElement.dataset.tab") == "agenda"
    await page.keyboard.press("v")
    assert await page.evaluate("document.activeElement.matches('[data-rcp-viewer]')")
