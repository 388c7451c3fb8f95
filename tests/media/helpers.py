"""Helpers for the media tests: rooms with joined synthetic participants, and counting resources that must come
back to their baseline. (``until`` is tests/servers.py's, re-exported for the media tests.)"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media import MediaHub, RoomMedia
from media.synthetic import SyntheticParticipant
from tests.servers import until

__all__ = ["Resources", "join", "publisher_and_viewer", "rss_mb", "until", "video_receiver"]

async def join(room: RoomMedia, client: SyntheticParticipant, **callbacks: object) -> None:
    answer = await room.connect(client.name, await client.offer(), on_media=client.on_media, **callbacks)  # type: ignore[arg-type]
    await client.accept(answer)
    await until(lambda: client.pc.connectionState == "connected", f"{client.name} connected")


@asynccontextmanager
async def publisher_and_viewer(
    room_name: str, *, decode: bool = False
) -> AsyncIterator[tuple[RoomMedia, SyntheticParticipant]]:
    """A hub's room with a video-only ``publisher`` and a ``viewer`` with one slot, both joined; all closed
    afterwards. Yields the room and the viewer."""
    hub = MediaHub()
    room = hub.room(room_name)
    publisher = SyntheticParticipant("publisher", slots=1, audio=False)
    viewer = SyntheticParticipant("viewer", slots=1, video=False, audio=False, decode=decode)
    try:
        await join(room, publisher)
        await join(room, viewer)
        yield room, viewer
    finally:
        await publisher.close()
        await viewer.close()
        await hub.close()


def video_receiver(client: SyntheticParticipant) -> Any:
    """The client's aiortc receiver of the video it shows."""
    return next(t.receiver for t in client.pc.getTransceivers() if t.kind == "video" and t.receiver.track)


@dataclass(frozen=True)
class Resources:
    tasks: int
    threads: int
    fds: int

    @classmethod
    def now(cls) -> Resources:
        gc.collect()
        threads = [
            t for t in threading.enumerate() if not t.name.startswith(("ThreadPoolExecutor", "asyncio_"))
        ]
        return cls(
            tasks=len([t for t in asyncio.all_tasks() if not t.done()]),
            threads=len(threads),
            fds=len(os.listdir("/proc/self/fd")),
        )


def rss_mb() -> float:
    """This process's resident memory, after a garbage collection."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
