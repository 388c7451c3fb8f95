"""The media plane's start and stop, for the app's lifespan: a hub alone, or a hub behind Redis placement.

Why one door: the app should not know whether media runs on one node or several. With ``settings.redis_url``
set (several nodes behind a load balancer), rooms are placed through Redis (:mod:`media.placement`); otherwise
the process's :class:`~media.hub.MediaHub` serves every room. Either way the object has ``room(meeting_id)``,
``browser_ice_servers()`` and is closed within ``close_timeout_s`` at shutdown.

Example (rcp/app.py lifespan)::

    async with open_media_plane(settings) as media:
        async with open_rooms(settings, db, media=media) as rooms:
            yield
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from .hub import MediaHub
from .placement import MediaNode

__all__ = ["MediaPlane", "open_media_plane"]

logger = logging.getLogger(__name__)

MediaPlane = MediaHub | MediaNode


@contextlib.asynccontextmanager
async def open_media_plane(settings: Any, *, close_timeout_s: float = 5.0) -> AsyncIterator[MediaPlane]:
    """Start the media plane from :class:`rcp.config.Settings`; close every peer on exit (bounded time)."""
    hub = MediaHub.from_settings(settings)
    redis_url = str(getattr(settings, "redis_url", "") or "")
    if redis_url.startswith(("redis://", "rediss://", "unix://")):
        node = MediaNode(hub, redis_url, node_id=str(settings.node_id))
        await node.start()
        logger.info("media plane: node %s, rooms placed through Redis", settings.node_id)
        try:
            yield node
        finally:
            await node.close(close_timeout_s)
        return
    try:
        yield hub
    finally:
        await hub.close(close_timeout_s)
