"""Each room test seats its own people in a meeting of its own (``room_people``)."""

from __future__ import annotations

import pytest

from rcp.db import Database
from tests.room.people import RoomPeople, make_room_people


@pytest.fixture
async def room_people(db: Database) -> RoomPeople:
    return await make_room_people(db)
