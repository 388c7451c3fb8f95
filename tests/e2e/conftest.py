"""Fixtures of the browser tests (Chromium itself is tests/fixtures/browser.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.room.node import demo_service, room_app
from tests.servers import ServerThread


@pytest.fixture(scope="module")
async def imaging_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, int]]:
    """A service of its own (SQLite, local archive) with the demo meetings and the demo CTs attached."""
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("room-e2e"), imaging_slices=30)
    node = ServerThread(room_app(settings, media=True)).start()
    try:
        yield node, meeting_id
    finally:
        node.close()
