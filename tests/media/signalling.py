"""A minimal signalling server for browser tests of rtc.js against the real MediaHub (same event loop).

It stands in for the room's WebSocket until the room page exists: ``/ws/{participant}`` carries
``rtc.offer`` / ``rtc.ice`` / ``rtc.close`` in and ``rtc.answer`` / ``media.slots`` / ``speaker`` out, and
echoes data-channel messages it receives to ``received``. ``/`` serves a page that joins with rtc.js.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from media import MediaHub, RoomMedia
from tests.servers import serve_in_loop

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="/static/css/video.css"></head>
<body><p id="devices"></p><video class="rtc-preview"></video><div class="rtc-strip" id="strip"></div>
<script type="module">
import {MediaSession} from '/static/js/rtc.js';
const params = new URLSearchParams(location.search);
const me = params.get('me');
if (params.get('refuse')) {
  navigator.mediaDevices.getUserMedia = async () => { throw new DOMException('refused', 'NotAllowedError'); };
}
const ws = new WebSocket(`ws://${location.host}/ws/${me}`);
await new Promise((resolve) => ws.addEventListener('open', resolve));
const media = new MediaSession({signal: (m) => ws.send(JSON.stringify(m)), slots: Number(params.get('slots') || 3)});
window.media = media;
window.received = [];
window.states = [];
media.addEventListener('tile', (e) => document.getElementById('strip').append(e.detail.element));
media.addEventListener('tile-removed', (e) => e.detail.element.remove());
// rtc.js says which devices run and the browser's error name; the page words it (as conference.js does).
media.addEventListener('devices', (e) => {
  document.getElementById('devices').textContent =
    e.detail.error ? `camera refused (${e.detail.error}): the meeting goes on without it` : '';
});
media.addEventListener('message', (e) => window.received.push([e.detail.channel, e.detail.data]));
media.addEventListener('state', (e) => window.states.push(e.detail.state));
ws.addEventListener('message', (m) => {
  const msg = JSON.parse(m.data);
  if (media.handles(msg)) media.handle(msg);
  if (msg.type === 'speaker') media.setSpeaker(msg.participant);
});
await media.start();
media.attachPreview(document.querySelector('video.rtc-preview'));
await media.connect();
window.ready = true;
</script></body></html>
"""


@dataclass
class Signalling:
    base_url: str
    hub: MediaHub
    room: RoomMedia
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    sockets: dict[str, WebSocket] = field(default_factory=dict)
    outboxes: dict[str, asyncio.Queue[str]] = field(default_factory=dict)
    speakers: list[str | None] = field(default_factory=list)
    offer_sizes: dict[str, int] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def serve_signalling(meeting: str = "browser") -> AsyncIterator[Signalling]:
    hub = MediaHub()
    room = hub.room(meeting)
    state = Signalling("", hub, room)  # base_url: once served, below

    def on_speaker(participant: str | None) -> None:
        state.speakers.append(participant)
        for outbox in state.outboxes.values():
            outbox.put_nowait(json.dumps({"type": "speaker", "participant": participant}))

    room.on_speaker = on_speaker

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def ws(websocket: WebSocket) -> None:
        me = websocket.path_params["participant"]
        await websocket.accept()
        state.sockets[me] = websocket
        outbox: asyncio.Queue[str] = asyncio.Queue()

        async def pump() -> None:
            while True:
                await websocket.send_text(await outbox.get())

        state.outboxes[me] = outbox
        sender = asyncio.ensure_future(pump())
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                if message["type"] == "rtc.offer":
                    state.offer_sizes[me] = len(message["sdp"])
                    answer = await room.connect(
                        me,
                        message["sdp"],
                        on_message=lambda channel, data: state.received.append((me, channel, data)),
                        on_media=lambda event: outbox.put_nowait(json.dumps(event)),
                    )
                    outbox.put_nowait(json.dumps({"type": "rtc.answer", "sdp": answer}))
                    # A late joiner learns who speaks now (the room page puts it in its snapshot).
                    outbox.put_nowait(json.dumps({"type": "speaker", "participant": room.speaker}))
                elif message["type"] == "rtc.ice":
                    await room.add_ice_candidate(me, message.get("candidate"))
                elif message["type"] == "media.pause":
                    room.set_paused(me, message["participant"], "video", bool(message["paused"]))
                elif message["type"] == "rtc.close":
                    await room.disconnect(me)
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            state.sockets.pop(me, None)
            state.outboxes.pop(me, None)
            await room.disconnect(me)

    app = Starlette(
        routes=[
            Route("/", page),
            WebSocketRoute("/ws/{participant}", ws),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
    )
    try:
        async with serve_in_loop(app, lifespan="off") as url:
            state.base_url = url
            yield state
    finally:
        await hub.close(timeout=5)
