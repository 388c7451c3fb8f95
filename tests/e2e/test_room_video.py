"""The room page's videoconference end to end: headless Chromium (fake camera and microphone) and the real server
with its media hub.

Three demo clinicians open the meeting room: each page decodes the other two videos and hears them, the tiles
carry names and specialties, and the server forwarded without encoding. A muted microphone or a camera turned off
shows on the others' tiles (through the room's ``media.state`` → ``participant.media``); low-bandwidth mode stops
the paused videos from decoding while the sound goes on, and turning it off brings them back; a broken path shows
"reconnecting" on the tiles and in the header, then recovers. A clinician whose camera and microphone are refused
reads the message in French and still sees the others.

No wall-clock assertions: waits only bound hanging (generous, for a loaded 2-core machine); a paused video is
proved by the forwarder's own counters (its frames held back, none sent), a "still decoding" one by a count that
grows.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from babel.messages.pofile import read_po
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout
from starlette.applications import Starlette

from rcp.i18n import LOCALE_DIR
from tests.fixtures.browser import NewPage
from tests.room.client import session_cookie
from tests.room.node import demo_service, room_app
from tests.servers import ServerThread, until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 45_000
#: Polls of the page's statistics (every POLL_S) before a condition is declared never met.
POLLS = 300
POLL_S = 0.2
#: The message room.html shows when the camera and microphone are refused (its English msgid).
REFUSED = (
    "Camera and microphone access was refused. The meeting goes on: you can see, hear and follow the images. To be "
    "seen and heard, allow the camera and microphone in the browser's site settings, then press Start camera."
)
REFUSE_DEVICES = (
    "navigator.mediaDevices.getUserMedia = async () => {"
    " throw new DOMException('Permission denied', 'NotAllowedError'); };"
)


@dataclass(frozen=True)
class Service:
    node: ServerThread
    app: Starlette
    meeting_id: int


@pytest.fixture(scope="module")
async def video_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """A service of its own (SQLite) with the demo meetings, the room and the media hub."""
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("room-video"))
    app = room_app(settings, media=True)
    node = ServerThread(app).start()
    try:
        yield Service(node, app, meeting_id)
    finally:
        node.close()


# -- driving a page ---------------------------------------------------------------------------------------------
class Clinician:
    """One clinician's room page and their user id (the participant id of their tile elsewhere)."""

    def __init__(self, page: Page, user_id: int, name: str) -> None:
        self.page = page
        self.id = str(user_id)
        self.name = name

    def tile(self, other: Clinician) -> str:
        return f'figure.rtc-tile[data-participant="{other.id}"]'

    async def stats(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = await self.page.evaluate("rcpRoom.media.stats()")
        return result

    async def until_tile(self, other: Clinician, classes: str, *, present: bool = True) -> None:
        """Wait until ``other``'s tile has (or no longer has) all of ``classes`` (e.g. ``.rtc-muted``)."""
        selector = self.tile(other) + classes
        script = f"!!document.querySelector({selector!r}) === {str(present).lower()}"
        try:
            await self.page.wait_for_function(script, timeout=TIMEOUT_MS, polling=200)
        except PlaywrightTimeout:
            raise AssertionError(
                f"{self.name}: {other.name}'s tile {'never got' if present else 'kept'} {classes}"
            ) from None

    async def until_stats(
        self, what: str, condition: Callable[[dict[str, dict[str, Any]]], bool]
    ) -> dict[str, dict[str, Any]]:
        """Poll the page's inbound statistics until ``condition`` holds (wait_for_function does not await)."""
        stats: dict[str, dict[str, Any]] = {}
        for _ in range(POLLS):
            stats = await self.stats()
            if condition(stats):
                return stats
            await asyncio.sleep(POLL_S)
        raise AssertionError(f"{self.name}: gave up waiting for {what} (last stats: {stats})")

    async def until_decoding(
        self, other: Clinician, more_than: int = 5, *, audio: bool = False
    ) -> dict[str, Any]:
        def ok(stats: dict[str, dict[str, Any]]) -> bool:
            row = stats.get(other.id, {})
            return row.get("framesDecoded", 0) > more_than and (
                not audio or row.get("totalAudioEnergy", 0) > 0
            )

        return (await self.until_stats(f"{other.name}'s video{' and audio' if audio else ''}", ok))[other.id]

    async def click(self, action: str) -> None:
        await self.page.click(f'[data-video-action="{action}"]')


async def open_room(
    new_page: NewPage,
    url: str,
    username: str,
    meeting_id: int,
    *,
    locale: str = "en-GB",
    init_script: str | None = None,
) -> Clinician:
    cookie = await session_cookie(url, username)
    page = await new_page((1280, 720), bypass_csp=True, locale=locale)  # playwright evaluates strings
    if init_script:
        await page.add_init_script(init_script)
    name, value = cookie.split("=", 1)
    await page.context.add_cookies([{"name": name, "value": value, "url": url}])
    await page.goto(f"{url}/meetings/{meeting_id}/room")
    await page.wait_for_function("window.rcpRoom && rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
    user_id = await page.evaluate("rcpRoom.socket.welcome.user_id")
    display = await page.evaluate(
        "rcpRoom.room.participants.get(rcpRoom.socket.welcome.user_id).display_name"
    )
    return Clinician(page, user_id, display)


def room_media(service: Service) -> Any:
    """The server's media of this meeting (read only, from the test's thread)."""
    return service.app.state.rooms.media.rooms[str(service.meeting_id)]


def assert_no_encoder(service: Service, people: list[Clinician]) -> None:
    """The server forwarded without encoding: no libvpx/opus encoder context was ever opened on a sender."""
    media = room_media(service)
    for person in people:
        peer = media.peer(person.id)
        assert peer is not None and peer.pc is not None, f"no server peer for {person.name}"
        for transceiver in peer.pc.getTransceivers():
            encoder = getattr(transceiver.sender, "_RTCRtpSender__encoder", None)
            assert encoder is None or getattr(encoder, "codec", None) is None or transceiver.kind == "audio"


async def until_withheld(service: Service, me: Clinician, other: Clinician) -> dict[str, Any]:
    """``other``'s video paused for ``me`` at the forwarder: its frames reach ``me``'s slot and are held back there,
    none forwarded; ``me``'s page decoded at most what was forwarded before. Returns ``me``'s stats of ``other``."""
    slot = room_media(service).slot_showing(me.id, other.id, "video")
    assert slot is not None and slot.paused, f"{me.name}'s slot of {other.name} is not paused at the server"
    forwarded, withheld = slot.forwarded, slot.withheld
    await until(lambda: slot.withheld > withheld + 15, f"{other.name}'s video held back from {me.name}")
    assert slot.forwarded == forwarded, f"{other.name}'s video still forwarded to {me.name} while paused"
    row: dict[str, Any] = (await me.stats())[other.id]
    assert row["framesDecoded"] <= forwarded
    return row


async def in_server_loop(node: ServerThread, make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine on the server's own event loop (aiortc objects belong to it)."""
    loop = node.loop

    async def run() -> Any:
        return await make()

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))


# -- the tests --------------------------------------------------------------------------------------------------
async def test_three_clinicians_see_hear_mute_pause_and_reconnect(
    video_room: Service, new_page: NewPage
) -> None:
    node, meeting_id = video_room.node, video_room.meeting_id
    radiologist = await open_room(new_page, node.url, "dr.radiologue", meeting_id)
    surgeon = await open_room(new_page, node.url, "dr.chirurgien", meeting_id)
    oncologist = await open_room(new_page, node.url, "dr.oncologue", meeting_id)
    people = [radiologist, surgeon, oncologist]

    # Everybody sees and hears the two others, on tiles named after them (with their specialty).
    for me in people:
        for other in people:
            if other is not me:
                await me.until_decoding(other, audio=True)
        for other in people:
            if other is me:
                continue
            caption = await me.page.evaluate(
                f"""(() => {{ const t = document.querySelector({me.tile(other)!r});
                    return [t.querySelector('.rtc-name').textContent, t.querySelector('.rtc-detail').textContent]; }})()"""
            )
            specialty = await me.page.evaluate(
                f"""(() => {{ const p = rcpRoom.room.participants.get({other.id});
                    return JSON.parse(document.getElementById('room-data').textContent).specialties[p.specialty]; }})()"""
            )
            assert caption[0] == other.name
            assert specialty and caption[1].startswith(specialty), caption
        assert await me.page.text_content("figure.rtc-self .rtc-name") == "You"
        assert await me.page.evaluate("!!document.querySelector('figure.rtc-self video').srcObject")
    for me in people:  # still decoding: the counts keep growing
        first = await me.stats()
        for other in people:
            if other is not me:
                await me.until_decoding(other, first[other.id]["framesDecoded"] + 5)
    assert_no_encoder(video_room, people)

    # The oncologist mutes her microphone and turns her camera off: the two others see it on her tile.
    await oncologist.click("mic")
    for me in (radiologist, surgeon):
        await me.until_tile(oncologist, ".rtc-muted")
        flag = f'[data-room-participants] li[data-user-id="{oncologist.id}"] .rtc-flag[data-flag="rtc-muted"]'
        await me.page.wait_for_selector(flag, state="attached", timeout=TIMEOUT_MS)  # in the participants tab
    assert await oncologist.page.get_attribute('[data-video-action="mic"]', "data-on") == "false"
    await oncologist.click("camera")
    for me in (radiologist, surgeon):
        await me.until_tile(oncologist, ".rtc-video-off")
        # Her initials, not a black picture.
        shown = await me.page.evaluate(
            f"""(() => {{ const t = document.querySelector({me.tile(oncologist)!r});
                return [getComputedStyle(t.querySelector('.rtc-initials')).display, t.querySelector('.rtc-initials').textContent,
                        getComputedStyle(t.querySelector('video')).visibility]; }})()"""
        )
        assert shown == ["grid", "AR", "hidden"], shown
    await oncologist.page.wait_for_selector("figure.rtc-self.rtc-no-video.rtc-muted", timeout=TIMEOUT_MS)
    # Camera on again: the others' tiles show her picture again (her microphone stays muted).
    await oncologist.click("camera")
    for me in (radiologist, surgeon):
        await me.until_tile(oncologist, ".rtc-video-off", present=False)
        await me.until_tile(oncologist, ".rtc-muted")

    # Low-bandwidth mode on the radiologist's page: only the featured speaker's video still comes. The surgeon is
    # the only one left with a live microphone, so the server elects him; the oncologist's video is paused.
    await radiologist.click("mic")
    await radiologist.click("low-bandwidth")
    assert (
        await radiologist.page.get_attribute('[data-video-action="low-bandwidth"]', "aria-pressed") == "true"
    )
    await radiologist.page.wait_for_function(
        f"rcpRoom.media.featured === {surgeon.id!r}", timeout=TIMEOUT_MS, polling=200
    )
    await radiologist.until_tile(oncologist, ".rtc-paused")
    await radiologist.until_tile(surgeon, ".rtc-paused", present=False)
    # The featured speaker's tile is the large one.
    widths = await radiologist.page.evaluate(
        f"""[{radiologist.tile(surgeon)!r}, {radiologist.tile(oncologist)!r}]
            .map((s) => document.querySelector(s).getBoundingClientRect().width)"""
    )
    assert widths[0] > widths[1] * 1.5, widths
    after = await until_withheld(video_room, radiologist, oncologist)
    # Her sound still flows (muted: silence, but the packets keep coming), and the surgeon is still seen and heard.
    await radiologist.until_stats(
        "the paused participant's audio packets",
        lambda s: s.get(oncologist.id, {}).get("audioPackets", 0) > after["audioPackets"] + 25,
    )
    seen = (await radiologist.stats())[surgeon.id]
    await radiologist.until_stats(
        "the featured speaker's video and sound",
        lambda s: (
            s[surgeon.id]["framesDecoded"] > seen["framesDecoded"] + 5
            and s[surgeon.id]["totalAudioEnergy"] > seen["totalAudioEnergy"]
        ),
    )
    # Low-bandwidth mode off: her video comes back.
    await radiologist.click("low-bandwidth")
    await radiologist.until_tile(oncologist, ".rtc-paused", present=False)
    await radiologist.until_decoding(oncologist, after["framesDecoded"] + 5)
    await radiologist.click("mic")
    await oncologist.click("mic")
    for me in (surgeon, oncologist):
        await me.until_tile(radiologist, ".rtc-muted", present=False)

    # The surgeon's path breaks (the server's end of his peer disappears without a word, as when UDP gets
    # blocked): his tiles and his header say "reconnecting" instead of freezing, then a fresh peer brings him back.
    peer = room_media(video_room).peer(surgeon.id)
    assert peer is not None and peer.pc is not None
    await in_server_loop(node, peer.pc.close)
    await surgeon.page.wait_for_function(
        f"!!document.querySelector({surgeon.tile(radiologist) + '.rtc-reconnecting'!r})",
        timeout=60_000,
        polling=200,
    )
    header = await surgeon.page.text_content("[data-room-media]")
    assert header == "video lost, reconnecting…"
    assert (
        await surgeon.page.get_attribute(surgeon.tile(radiologist), "data-reconnecting-label")
        == "Reconnecting…"
    )
    await surgeon.page.wait_for_function("rcpRoom.media.state === 'connected'", timeout=60_000, polling=250)
    assert await surgeon.page.is_hidden("[data-room-media]")
    for other in (radiologist, oncologist):
        await surgeon.until_tile(other, ".rtc-reconnecting", present=False)
        await surgeon.until_decoding(
            other, (await surgeon.stats()).get(other.id, {}).get("framesDecoded", 0) + 5
        )
        await other.until_decoding(surgeon, (await other.stats())[surgeon.id]["framesDecoded"] + 5)

    # Devices: the lists name the fake camera and microphones (labels once access was granted) and show the ones in
    # use; choosing another microphone switches without renegotiating, and the others still hear her.
    page = radiologist.page
    await page.click(".room-video-devices summary")
    cameras = await page.eval_on_selector_all(
        'select[data-device="videoinput"] option', "options => options.map((o) => o.textContent)"
    )
    assert cameras and all(c and not re.fullmatch(r"Camera \d+", c) for c in cameras), cameras
    in_use = await page.evaluate("rcpRoom.media.localStream.getVideoTracks()[0].getSettings().deviceId")
    assert await page.input_value('select[data-device="videoinput"]') == in_use
    microphones: list[str] = await page.eval_on_selector_all(
        'select[data-device="audioinput"] option', "options => options.map((o) => o.value)"
    )
    current = await page.input_value('select[data-device="audioinput"]')
    other_microphone = next((m for m in microphones if m and m != current), None)
    if other_microphone is not None:  # Chromium's fake device offers several microphones
        await page.select_option('select[data-device="audioinput"]', other_microphone)
        await page.wait_for_function(
            "(id) => rcpRoom.media.localStream.getAudioTracks()[0]?.getSettings().deviceId === id",
            arg=other_microphone,
            timeout=TIMEOUT_MS,
        )
        heard = (await surgeon.stats())[radiologist.id]
        await surgeon.until_stats(
            "the radiologist's sound from her other microphone",
            lambda s: s[radiologist.id]["totalAudioEnergy"] > heard["totalAudioEnergy"],
        )

    # On a 4K screen the viewer keeps most of the width; the cameras' column grows a little.
    column = await page.evaluate("document.querySelector('[data-room-video]').getBoundingClientRect().width")
    await page.set_viewport_size({"width": 3840, "height": 2160})
    widths = await page.evaluate(
        "['.room-viewer', '[data-room-video]'].map((s) => document.querySelector(s).getBoundingClientRect().width)"
    )
    assert widths[0] > 3 * widths[1] and widths[1] > column, (widths, column)


async def test_refused_camera_and_microphone_say_so_in_french_and_the_meeting_goes_on(
    video_room: Service, new_page: NewPage
) -> None:
    node, meeting_id = video_room.node, video_room.meeting_id
    radiologist = await open_room(new_page, node.url, "dr.radiologue", meeting_id)
    refuser = await open_room(
        new_page, node.url, "dr.radiotherapeute", meeting_id, locale="fr-FR", init_script=REFUSE_DEVICES
    )

    with (LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        french = read_po(handle, locale="fr")
    message = french.get(REFUSED)
    assert message is not None and message.string and message.string != REFUSED
    notice = refuser.page.locator("[data-video-notice]")
    await notice.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert await notice.text_content() == message.string

    # Without camera or microphone she still sees and hears the radiologist; her own tile shows her initials and
    # the buttons offer to try again.
    await refuser.until_decoding(radiologist, audio=True)
    await refuser.page.wait_for_selector("figure.rtc-self.rtc-no-video.rtc-muted", timeout=TIMEOUT_MS)
    assert await refuser.page.text_content("figure.rtc-self .rtc-initials") == "KB"
    assert await refuser.page.text_content('[data-video-action="camera"] [data-label]') == "Activer la caméra"
    # The radiologist sees her as muted, camera off (her initials), not as a black picture.
    await radiologist.until_tile(refuser, ".rtc-muted.rtc-video-off")
    assert await radiologist.page.text_content(radiologist.tile(refuser) + " .rtc-initials") == "KB"
