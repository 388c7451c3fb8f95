"""Honest connection status and a follow mode that holds, in headless Chromium (issue 15, items 4 and 5).

- A network cut (tests/fixtures/relay.py stops the traffic between the page and the server; Playwright's
  ``set_offline`` would leave the socket open): the page says "reconnecting" over a dimmed viewer *before* the
  network comes back, the chair's list shows the person "connection unstable" and then gone, and after the network
  returns the page is connected again and up to date (the case the chair opened meanwhile).
- A follower's wheel never moves their slice silently: it is refused with the hint "You are following Dr X — press
  F to browse freely", the room still lists them as following; F switches to browsing for everybody to see, the
  wheel then works, and the presenter's pointer on the other slice shows as an edge marker with its image number.

No wall-clock assertions: waits only bound hanging (bench/room_status.py measures the detection time).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect

from rcp.room.connection import RoomConfig
from tests.e2e.pages import TIMEOUT_MS, open_room
from tests.fixtures.browser import NewPage
from tests.fixtures.relay import Relay
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service, room_app
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
async def plain_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, int]]:
    """A service without the media hub: the relay carries TCP only, and with WebRTC the room's data channel
    would run beside it over UDP on loopback, untouched by the cut. Without it, everything the page exchanges
    with the server goes through the relay, as everything goes through a hospital's link that fails.

    The server gives a silent connection up after 6 s instead of 3.5 s, so that "connection unstable" (after 2 s)
    stays on the chair's screen long enough to be seen on a busy machine; the page's own timings are unchanged."""
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("room-status"))
    node = ServerThread(room_app(settings, config=RoomConfig(heartbeat_timeout_s=6.0))).start()
    try:
        yield node, meeting_id
    finally:
        node.close()


async def _me(page: Page) -> int:
    user_id: int = await page.evaluate("rcpRoom.socket.welcome.user_id")
    return user_id


async def test_a_network_cut_shows_reconnecting_before_the_network_returns(
    plain_room: tuple[ServerThread, int], new_page: NewPage
) -> None:
    node, meeting_id = plain_room
    chair_cookie = await session_cookie(node.url, "secretariat")
    cookie = await session_cookie(node.url, "dr.chirurgien")
    async with Relay(node.url) as relay:
        chair = await open_room(new_page, node.url, chair_cookie, meeting_id, (1280, 720))
        page = await open_room(new_page, relay.url, cookie, meeting_id, (1280, 720))
        surgeon = await _me(page)
        room = page.locator("[data-room]")
        await expect(room).to_have_attribute("data-status", "open", timeout=TIMEOUT_MS)
        await expect(page.locator("[data-room-path]")).to_have_text("backup link")
        entry = chair.locator(f"[data-room-participants] li[data-user-id='{surgeon}']")
        await expect(entry).to_have_attribute("data-presence", "here", timeout=TIMEOUT_MS)

        relay.cut()
        # The page notices by itself (no network event reaches it) and says so over dimmed images, at once ...
        await expect(room).to_have_attribute("data-status", "reconnecting", timeout=TIMEOUT_MS)
        await expect(page.locator("[data-room-offline]")).to_be_visible()
        await expect(page.locator("[data-room-status]")).to_have_text("connection lost, reconnecting…")
        await expect(page.locator("[data-rcp-viewer]")).to_have_class(re.compile(r"\broom-viewer-offline\b"))
        await expect(page.locator("[data-room-path]")).to_have_text("no link")
        # ... the chair sees the connection unstable before seeing the person gone ...
        await expect(entry).to_have_attribute("data-presence", "unstable", timeout=TIMEOUT_MS)
        await expect(entry.locator("[data-unstable]")).to_have_text("connection unstable")
        await expect(entry).to_have_attribute("data-presence", "gone", timeout=TIMEOUT_MS)
        # ... and moves the room on meanwhile (through the chair's socket: where the button sits is the layout's).
        await chair.evaluate("rcpRoom.socket.send({type: 'case.next'})")
        await chair.wait_for_function("rcpRoom.room.caseId !== null", timeout=TIMEOUT_MS)
        case_id = await chair.evaluate("rcpRoom.room.caseId")
        assert relay.flowing is False and await room.get_attribute("data-status") == "reconnecting"

        relay.restore()
        await expect(room).to_have_attribute("data-status", "open", timeout=TIMEOUT_MS)
        await expect(page.locator("[data-room-offline]")).to_be_hidden()
        await expect(page.locator("[data-room-path]")).to_have_text("backup link")
        await page.wait_for_function(f"rcpRoom.room.caseId === {case_id}", timeout=TIMEOUT_MS)
        await expect(entry).to_have_attribute("data-presence", "here", timeout=TIMEOUT_MS)


async def test_a_followers_wheel_never_moves_the_slice_silently(
    imaging_room: tuple[ServerThread, int], new_page: NewPage
) -> None:
    node, meeting_id = imaging_room
    cookies = {n: await session_cookie(node.url, n) for n in ("secretariat", "dr.radiologue", "dr.oncologue")}
    chair = await RoomClient.open(node.url, cookies["secretariat"], meeting_id)
    try:
        presenter = await open_room(new_page, node.url, cookies["dr.radiologue"], meeting_id, (1280, 720))
        follower = await open_room(new_page, node.url, cookies["dr.oncologue"], meeting_id, (1280, 720))
        await chair.send({"type": "case.next"})
        await chair.send({"type": "floor.handover", "to": await _me(presenter)})
        await presenter.wait_for_function(
            "rcpRoom.room.presenter === rcpRoom.socket.welcome.user_id && rcpRoom.viewer.getState().viewports[0].seriesUid",
            timeout=TIMEOUT_MS,
        )
        await presenter.evaluate("rcpRoom.viewer.settled()")
        await presenter.evaluate("rcpRoom.viewer.scrollTo(12, 0)")
        await follower.wait_for_function("rcpRoom.viewer.getState().viewports[0].index === 12", timeout=TIMEOUT_MS)
        await follower.evaluate("rcpRoom.viewer.settled()")
        oncologist = await _me(follower)
        name = await presenter.evaluate("rcpRoom.room.participants.get(rcpRoom.room.presenter).display_name")

        # The follower's wheel over the image: refused, with the hint; the slice and the room's "follow" hold.
        box = await follower.locator("[data-viewport='0']").bounding_box()
        assert box is not None
        await follower.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await follower.mouse.wheel(0, 300)
        hint = follower.locator("[data-follow-hint='following']")
        await expect(hint).to_be_visible(timeout=TIMEOUT_MS)
        await expect(hint).to_have_text(f"You are following {name} — press F to browse freely")
        assert await follower.evaluate("rcpRoom.guard.refused") >= 1
        assert await follower.evaluate("rcpRoom.viewer.getState().viewports[0].index") == 12
        assert await follower.evaluate(
            "rcpRoom.room.participants.get(rcpRoom.socket.welcome.user_id).mode") == "follow"
        assert not [e for e in chair.of("participant.mode") if e["user_id"] == oncologist]

        # F: browsing, for the room too; the note says how to come back, and the wheel now moves this screen.
        await follower.keyboard.press("f")
        await follower.wait_for_function(
            "rcpRoom.room.participants.get(rcpRoom.socket.welcome.user_id).mode === 'free'", timeout=TIMEOUT_MS)
        await chair.wait_for(lambda c: any(e["user_id"] == oncologist and e["mode"] == "free"
                                           for e in c.of("participant.mode")), timeout=TIMEOUT_MS / 1000)
        note = follower.locator("[data-follow-hint='browsing']")
        await expect(note).to_have_text(f"You are browsing freely — press F to follow {name} again",
                                        timeout=TIMEOUT_MS)
        await follower.mouse.wheel(0, 300)
        await follower.wait_for_function("rcpRoom.viewer.getState().viewports[0].index === 13", timeout=TIMEOUT_MS)

        # The presenter points on their slice (image 13): on the follower's other slice, an edge marker says where.
        pbox = await presenter.locator("[data-viewport='0']").bounding_box()
        assert pbox is not None
        x, y = pbox["x"] + pbox["width"] * 0.4, pbox["y"] + pbox["height"] * 0.6
        await presenter.mouse.move(x - 5, y - 5)
        await presenter.mouse.move(x, y)
        edge = follower.locator("[data-pointer-edge='0']")
        await expect(edge).to_be_visible(timeout=TIMEOUT_MS)
        await expect(edge).to_have_attribute("data-slice", "13")
        await expect(edge).to_contain_text("Pointer: image 13")

        # F again: following, back on the presenter's slice, where the pointer itself is drawn.
        await follower.keyboard.press("f")
        await follower.wait_for_function("rcpRoom.viewer.getState().viewports[0].index === 12", timeout=TIMEOUT_MS)
        await expect(edge).to_be_hidden(timeout=TIMEOUT_MS)
        await expect(follower.locator("[data-follow-hint]")).to_be_hidden()
    finally:
        await chair.close()
