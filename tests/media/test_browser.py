"""rtc.js in headless Chromium (fake camera and microphone) against the real MediaHub: three pages see and hear
each other through the forwarder, with no encoder on the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page

from tests.fixtures.browser import NewPage

from .helpers import until
from .signalling import Signalling, serve_signalling

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
async def signalling() -> AsyncIterator[Signalling]:
    async with serve_signalling() as state:
        yield state


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("window.media ? window.media.stats() : {}")
    return result


async def until_decoding(
    page: Page, participant: str, more_than: int = 3, *, audio: bool = False
) -> dict[str, Any]:
    """Poll the page's inbound stats until ``participant``'s video decodes (and audio has energy, if asked).

    (Playwright's wait_for_function does not await a Promise, so stats are polled from here.)
    """
    row: dict[str, Any] = {}
    for _ in range(150):
        row = (await stats(page)).get(participant, {})
        if row.get("framesDecoded", 0) > more_than and (not audio or row.get("totalAudioEnergy", 0) > 0):
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"{participant} never decoded on this page (last stats: {row})")


async def test_three_pages_decode_each_other_through_the_forwarder(
    signalling: Signalling, new_page: NewPage
) -> None:
    names = ["alice", "bob", "carol"]
    pages = {}
    for name in names:
        page = await new_page((800, 600))
        await page.goto(f"{signalling.base_url}/?me={name}&slots=3")
        await page.wait_for_function("window.ready === true", timeout=20000)
        pages[name] = page

    first: dict[str, dict[str, Any]] = {}
    for name, page in pages.items():
        others = [other for other in names if other != name]
        first[name] = {other: await until_decoding(page, other, 5, audio=True) for other in others}
    for name, page in pages.items():
        for other in names:
            if other != name:  # still decoding: the counters keep growing
                await until_decoding(page, other, first[name][other]["framesDecoded"] + 5)
        tiles = await page.eval_on_selector_all(
            "figure.rtc-tile", "els => els.map(e => e.dataset.participant)"
        )
        assert sorted(tiles) == sorted(other for other in names if other != name)

    # The server forwarded without encoding: no libvpx/opus encoder context was ever opened on a sender.
    for name in names:
        peer = signalling.room.peer(name)
        assert peer is not None and peer.pc is not None
        for transceiver in peer.pc.getTransceivers():
            encoder = getattr(transceiver.sender, "_RTCRtpSender__encoder", None)
            assert encoder is None or getattr(encoder, "codec", None) is None or transceiver.kind == "audio"

    # Chromium's fake microphone beeps; its RFC 6464 audio level elects a speaker, whose tile is marked.
    await until(lambda: any(signalling.speakers), "an active speaker from the browsers' audio levels")
    marked: list[bool] = []
    for _ in range(100):  # the speaker may change meanwhile: any page marking someone's tile is enough
        marked = [bool(await page.query_selector("figure.rtc-tile.rtc-speaking")) for page in pages.values()]
        if any(marked):
            break
        await asyncio.sleep(0.2)
    assert any(marked), f"no tile marked as speaking (announced: {signalling.speakers})"

    # Data channels both ways.
    await pages["alice"].evaluate("window.media.send('view', JSON.stringify({seq: 1}))")
    await until(lambda: ("alice", "view", '{"seq":1}') in signalling.received, "view message at the server")
    assert signalling.room.send("bob", "pointer", "p")
    await pages["bob"].wait_for_function("window.received.some(([c, d]) => c === 'pointer' && d === 'p')")

    # A participant leaving removes their tile everywhere.
    await pages["carol"].evaluate("window.media.close()")
    for name in ("alice", "bob"):
        await pages[name].wait_for_function(
            "!document.querySelector('figure.rtc-tile[data-participant=\"carol\"]')", timeout=10000
        )


async def test_refused_camera_still_joins_and_sees_others(signalling: Signalling, new_page: NewPage) -> None:
    alice = await new_page((800, 600))
    await alice.goto(f"{signalling.base_url}/?me=alice&slots=2")
    await alice.wait_for_function("window.ready === true", timeout=20000)
    refuser = await new_page((800, 600))
    await refuser.goto(f"{signalling.base_url}/?me=bob&slots=2&refuse=1")
    await refuser.wait_for_function("window.ready === true", timeout=20000)
    # The page says so once getUserMedia's refusal comes back, which may be after ``ready`` on a loaded machine.
    await refuser.wait_for_function("document.querySelector('#devices').textContent.includes('refused')",
                                    timeout=20000)
    message = await refuser.text_content("#devices")
    assert message and "refused" in message and "meeting goes on" in message
    await until_decoding(refuser, "alice")


async def test_broken_path_shows_reconnecting_then_recovers_with_a_fresh_peer(
    signalling: Signalling, new_page: NewPage
) -> None:
    alice = await new_page((800, 600))
    await alice.goto(f"{signalling.base_url}/?me=alice&slots=2")
    await alice.wait_for_function("window.ready === true", timeout=20000)
    bob = await new_page((800, 600))
    await bob.goto(f"{signalling.base_url}/?me=bob&slots=2")
    await bob.wait_for_function("window.ready === true", timeout=20000)
    await until_decoding(bob, "alice")
    # The server side of bob's path disappears without a word (as when UDP gets blocked).
    peer = signalling.room.peer("bob")
    assert peer is not None and peer.pc is not None
    await peer.pc.close()
    # The tile says so instead of freezing.
    await bob.wait_for_function(
        "document.querySelector('figure.rtc-tile[data-participant=\"alice\"].rtc-reconnecting')",
        timeout=30000,
    )
    await bob.wait_for_function("window.media.state === 'connected'", timeout=40000, polling=250)
    await until_decoding(bob, "alice")
    # and alice sees bob's new peer on the same tile
    await until_decoding(alice, "bob")


async def test_pausing_a_hidden_tile_stops_its_video_but_not_its_audio(
    signalling: Signalling, new_page: NewPage
) -> None:
    alice = await new_page((800, 600))
    await alice.goto(f"{signalling.base_url}/?me=alice&slots=2")
    await alice.wait_for_function("window.ready === true", timeout=20000)
    bob = await new_page((800, 600))
    await bob.goto(f"{signalling.base_url}/?me=bob&slots=2")
    await bob.wait_for_function("window.ready === true", timeout=20000)
    await until_decoding(alice, "bob")
    await alice.evaluate("window.media.pause('bob', true)")
    await alice.wait_for_function(
        "document.querySelector('figure.rtc-tile.rtc-paused[data-participant=\"bob\"]')", timeout=10000
    )
    # Paused at the forwarder, by its own counters: bob's frames still reach alice's slot and are held back there.
    slot = signalling.room.slot_showing("alice", "bob", "video")
    assert slot is not None and slot.paused
    forwarded, withheld = slot.forwarded, slot.withheld
    audio = (await stats(alice))["bob"]["totalAudioEnergy"]
    await until(lambda: slot.withheld > withheld + 30, "a second of bob's video held back from alice")

    async def audio_flows() -> bool:
        return bool((await stats(alice))["bob"]["totalAudioEnergy"] > audio)

    await until(audio_flows, "bob's audio keeps flowing to alice")
    assert slot.forwarded == forwarded, "bob's video was forwarded to alice while paused"
    # Alice's browser cannot have decoded more of bob's video than the forwarder sent her before the pause.
    paused_at = (await stats(alice))["bob"]["framesDecoded"]
    assert paused_at <= forwarded
    await alice.evaluate("window.media.pause('bob', false)")
    await until_decoding(alice, "bob", paused_at + 5)
    assert slot.forwarded > forwarded


async def test_a_twelve_person_offer_fits_the_room_socket_limit(
    signalling: Signalling, new_page: NewPage
) -> None:
    """rcp.room.connection refuses offers over 60,000 characters; VP8/Opus-only preferences keep 11 slots under."""
    page = await new_page((800, 600))
    await page.goto(f"{signalling.base_url}/?me=alice&slots=11")
    await page.wait_for_function("window.ready === true", timeout=20000)
    await until(lambda: "alice" in signalling.offer_sizes, "alice's offer")
    print("offer size with 11 slots:", signalling.offer_sizes["alice"])
    assert signalling.offer_sizes["alice"] < 60_000, signalling.offer_sizes
    # The offer is recorded when it arrives; the server's slots exist once its answer is made.
    await until(lambda: len(signalling.room.slots("alice")) == 22, "22 slots (11 audio, 11 video) for alice")
