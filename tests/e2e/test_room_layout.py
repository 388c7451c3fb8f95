"""Prior vs current side by side in the live room, in headless Chromium: every viewport follows the presenter.

The radiologist presents a case with two CT studies in a 1x2 layout (current left, prior right) and scrolls the
prior only; a follower shows the same series, slice and window in the same viewport, the pointer over the right
viewport lands on the same pixel of the right viewport, and a follower who browses freely snaps back (both
viewports) when it follows again. No wall-clock assertions: waits only bound hanging.
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
