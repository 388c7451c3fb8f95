"""The live room end to end in headless Chromium: three screens of different sizes follow one presenter.

The coordinator is a scripted WebSocket participant (it opens the first case and hands the floor to the
radiologist); the radiologist and two followers are real pages running room.js and the viewer. The followers must
show the same slice and window, the presenter's pointer on the same image pixel, and a follower who browses
freely keeps its own slice until it follows again. No wall-clock assertions: waits only bound hanging.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.e2e.pages import TIMEOUT_MS, open_room
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

async def viewport0(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate("rcpRoom.viewer.getState().viewports[0]")
    return state


async def test_three_screens_follow_the_presenter_slice_window_and_pointer(
    imaging_room: tuple[ServerThread, int], new_page: NewPage
) -> None:
    node, meeting_id = imaging_room
    cookies = {
        n: await session_cookie(node.url, n)
        for n in ("secretariat", "dr.radiologue", "dr.chirurgien", "dr.oncologue")
    }
    chair = await RoomClient.open(node.url, cookies["secretariat"], meeting_id)
    try:
        presenter = await open_room(new_page, node.url, cookies["dr.radiologue"], meeting_id, (1280, 720))
        big = await open_room(new_page, node.url, cookies["dr.chirurgien"], meeting_id, (1920, 1080))
        small = await open_room(new_page, node.url, cookies["dr.oncologue"], meeting_id, (800, 600))
        followers = (big, small)

        # The coordinator opens the first case (its CT) and hands the floor to the radiologist.
        await chair.send({"type": "case.next"})
        radiologist = await presenter.evaluate("rcpRoom.socket.welcome.user_id")
        await chair.send({"type": "floor.handover", "to": radiologist})
        await presenter.wait_for_function(
            "rcpRoom.room.presenter === rcpRoom.socket.welcome.user_id && rcpRoom.viewer.getState().viewports[0].seriesUid",
            timeout=TIMEOUT_MS,
        )
        await presenter.evaluate("rcpRoom.viewer.settled()")

        # The presenter scrolls to a slice and changes the window.
        await presenter.evaluate("rcpRoom.viewer.scrollTo(12, 0)")
        await presenter.evaluate("rcpRoom.viewer.applyPreset('lung', 0)")
        shown = await viewport0(presenter)
        assert shown["index"] == 12
        for page in followers:
            await page.wait_for_function(
                """([index, center, width]) => {
                    const vp = rcpRoom.viewer.getState().viewports[0];
                    return vp.index === index && vp.window && vp.window.center === center && vp.window.width === width;
                }""",
                arg=[12, shown["window"]["center"], shown["window"]["width"]],
                timeout=TIMEOUT_MS,
            )
            assert (await viewport0(page))["seriesUid"] == shown["seriesUid"]

        # The presenter points at a spot: every follower's pointer sits on the same image pixel.
        box = await presenter.evaluate(
            "(() => { const r = document.querySelector('[data-viewport=\"0\"]').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        x, y = box[0] + box[2] * 0.4, box[1] + box[3] * 0.6
        await presenter.mouse.move(x - 5, y - 5)
        await presenter.mouse.move(x, y)
        target = await presenter.evaluate(f"rcpRoom.viewer.clientToImage({x}, {y})")
        for page in followers:
            await page.wait_for_function(
                """([col, row]) => {
                    const p = rcpRoom.pointer.latest;
                    return p && Math.abs(p.column - col) <= 0.05 && Math.abs(p.row - row) <= 0.05;
                }""",
                arg=[target["x"], target["y"]],
                timeout=TIMEOUT_MS,
            )
            # Drawn where that pixel is on this screen: back to image coordinates, the same pixel.
            # (once this screen's image is drawn: before that the viewer has no mapping and answers null)
            mapped = await page.wait_for_function(
                """() => {
                    const p = rcpRoom.pointer.latest;
                    const c = rcpRoom.viewer.imageToClient(p.column, p.row, 0);
                    return c && rcpRoom.viewer.clientToImage(c.x, c.y);
                }""",
                timeout=TIMEOUT_MS,
            )
            back = await mapped.json_value()
            assert int(back["x"]) == int(target["x"]) and int(back["y"]) == int(target["y"])

        # A follower browses freely elsewhere, and snaps back when it follows again.
        await big.click("[data-room-action='free']")
        await big.wait_for_function(
            "rcpRoom.room.participants.get(rcpRoom.socket.welcome.user_id).mode === 'free'",
            timeout=TIMEOUT_MS,
        )
        await big.evaluate("rcpRoom.viewer.scrollTo(3, 0)")
        await presenter.evaluate("rcpRoom.viewer.scrollTo(20, 0)")
        await small.wait_for_function(
            "rcpRoom.viewer.getState().viewports[0].index === 20", timeout=TIMEOUT_MS
        )
        await big.evaluate("rcpRoom.viewer.settled()")
        assert (await viewport0(big))["index"] == 3
        await big.click("[data-room-action='follow']")
        await big.wait_for_function("rcpRoom.viewer.getState().viewports[0].index === 20", timeout=TIMEOUT_MS)
        # With the server's media hub, the room's messages move to the WebRTC data channel: the page says "fast link".
        for page in (presenter, *followers):
            await page.wait_for_function("rcpRoom.socket.path === 'dc'", timeout=TIMEOUT_MS)
            assert await page.text_content("[data-room-path]") == "fast link"
        await presenter.evaluate("rcpRoom.viewer.scrollTo(25, 0)")
        for page in followers:
            await page.wait_for_function(
                "rcpRoom.viewer.getState().viewports[0].index === 25", timeout=TIMEOUT_MS
            )
    finally:
        await chair.close()
