"""A scripted room participant for the tests and the benchmark: a real WebSocket client (websockets 17).

It answers pings, keeps every frame, and applies events in ``seq`` order like the browser's room.js does.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake

from tests.factories import MadeUser, credentials

DEMO_PASSWORD = "rcp-demo-2026"
#: web/static/js/roomsocket.js ``BACKOFF_MS``: the page waits this long (±25 %) before each reconnection attempt.
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


async def session_cookie(base_url: str, username: str, password: str = DEMO_PASSWORD) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post("/api/session", json=credentials(username, password))
        assert response.status_code == 201, response.text
        return f"rcp_session={http.cookies['rcp_session']}"


async def cookies_for(base_url: str, people: Mapping[str, MadeUser]) -> dict[str, str]:
    """A signed-in session cookie for each of ``people`` (factory users), by the same names."""
    return {name: await session_cookie(base_url, user.username, user.password) for name, user in people.items()}


class RoomClient:
    def __init__(self, ws: ClientConnection, *, answer_pings: bool = True, seq: int = 0) -> None:
        self.ws = ws
        self.answer_pings = answer_pings
        self.frames: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.pointers: list[list[Any]] = []
        self.snapshot: dict[str, Any] | None = None
        self.seq = seq
        self.welcome: dict[str, Any] = {}
        self.closed: asyncio.Event = asyncio.Event()
        self.close_code: int | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        base_url: str,
        cookie: str,
        meeting_id: int,
        *,
        last_seq: int | None = None,
        answer_pings: bool = True,
        rcvbuf: int | None = None,
        origin: str | None = "",
    ) -> RoomClient:
        """Connect as the room page does; ``origin`` is the page's origin a browser sends (``""``: the server's
        own, ``base_url``; None sends no ``Origin`` at all, as a non-browser client)."""
        url = base_url.replace("http://", "ws://") + f"/ws/meetings/{meeting_id}"
        if last_seq is not None:
            url += f"?last_seq={last_seq}"
        sock = None
        if rcvbuf is not None:
            host, port = base_url.removeprefix("http://").split(":")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect((host, int(port)))
            sock.setblocking(False)
        headers = {"Cookie": cookie}
        if origin is not None:
            headers["Origin"] = origin or base_url.rstrip("/")
        ws = await connect(url, additional_headers=headers, sock=sock, max_queue=4 if rcvbuf else 16)
        client = cls(ws, answer_pings=answer_pings, seq=last_seq or 0)
        if rcvbuf is None:
            await client.wait_for(lambda c: bool(c.welcome) or c.closed.is_set())
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                kind = frame.get("type")
                if kind == "ping" and self.answer_pings:
                    await self.ws.send('{"type":"pong"}')
                elif kind == "welcome":
                    self.welcome = frame
                elif kind == "snapshot":
                    self.snapshot = frame["state"]
                    self.seq = frame["state"]["seq"]
                elif kind == "event":
                    if frame["seq"] == self.seq + 1:
                        self.seq = frame["seq"]
                        self.events.append(frame)
                    elif frame["seq"] > self.seq + 1:
                        raise AssertionError(f"gap: at {self.seq}, got {frame['seq']}")
                elif kind == "error":
                    self.errors.append(frame)
                elif kind == "pointer":
                    self.pointers.extend(frame["s"])
                async with self._changed:
                    self._changed.notify_all()
        except Exception:  # noqa: BLE001, S110 - the test reads close_code and the frames
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[RoomClient], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def rejoin(
    gone: RoomClient, urls: Sequence[str], cookie: str, meeting_id: int, *, attempts: int = 12
) -> tuple[RoomClient, float]:
    """Reconnect as the page's socket does once ``gone`` closed: wait the page's backoff, open the room again with
    ``?last_seq=`` the last event applied, and go on until a node takes it (``urls`` in turn, as a load balancer
    sends the next attempt to a node that answers). Returns the new client, resumed (its ``seq`` goes on from
    ``gone.seq``; a gap fails its reader), and the seconds from the close to ``resumed``."""
    await gone.closed.wait()
    closed_at = time.monotonic()
    for attempt in range(attempts):
        await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] * (0.75 + random.random() / 2))
        url = urls[attempt % len(urls)]
        try:
            client = await RoomClient.open(url, cookie, meeting_id, last_seq=gone.seq)
        except (OSError, TimeoutError, InvalidHandshake):
            continue  # the node is down (connection refused) or not answering
        try:
            await client.wait_for(lambda c: c.closed.is_set() or any(f["type"] == "resumed" for f in c.frames))
        except TimeoutError:
            await client.close()
            continue
        if client.closed.is_set():
            continue  # refused for now (4503: the database or the bus is away): try again
        return client, time.monotonic() - closed_at
    raise AssertionError(f"no node took the participant back in {attempts} attempts")
