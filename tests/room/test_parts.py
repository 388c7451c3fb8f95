"""The room's small parts without a server: token bucket, attendance, event log, bus (memory and Redis)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from rcp.db import Database
from rcp.room.attendance import attendance
from rcp.room.bus import MemoryBus, RedisBus, bus_from_url
from rcp.room.events import Participant, ParticipantJoined, ParticipantLeft, View, ViewChanged
from rcp.room.log import MemoryEventLog, SequenceTaken, SqlEventLog, load_state
from rcp.room.state import RoomState
from rcp.room.throttle import TokenBucket

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def test_token_bucket_throttles_then_refills() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert all(bucket.take(0.0) for _ in range(5))
    assert not bucket.take(0.0)
    assert bucket.take(0.1)  # one token back after 1/10 s
    assert not bucket.take(0.1)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)


def _joined(seq: int, user: int, connection: str, minutes: int) -> ParticipantJoined:
    p = Participant(user_id=user, display_name=f"U{user}", specialty="surgeon", connection=connection)
    return ParticipantJoined(seq=seq, at=T0 + timedelta(minutes=minutes), actor=user, participant=p)


def _left(seq: int, user: int, connection: str, minutes: int) -> ParticipantLeft:
    return ParticipantLeft(
        seq=seq, at=T0 + timedelta(minutes=minutes), actor=user, user_id=user, connection=connection
    )


def test_attendance_merges_reconnects_and_splits_real_absences() -> None:
    events = [
        _joined(1, 7, "a", 0),
        _joined(2, 7, "b", 10),  # Wi-Fi to 4G: same stay
        _left(3, 7, "a", 11),  # the old connection times out: ignored
        _left(4, 7, "b", 30),
        _joined(5, 7, "c", 40),
        _joined(6, 8, "d", 5),
    ]
    people = attendance(events)
    stays = [(s.joined_at, s.left_at) for s in people[7].stays]
    assert stays == [(T0, T0 + timedelta(minutes=30)), (T0 + timedelta(minutes=40), None)]
    assert people[7].seconds_present(until=T0 + timedelta(minutes=50)) == 40 * 60
    assert people[8].last_left_at is None and people[8].specialty == "surgeon"


async def test_memory_log_refuses_a_taken_sequence() -> None:
    log = MemoryEventLog()
    await log.append(1, [_joined(1, 7, "a", 0)])
    with pytest.raises(SequenceTaken):
        await log.append(1, [_joined(1, 8, "b", 0)])
    assert [e.seq for e in await log.since(1, 0)] == [1]


async def test_sql_log_round_trip_unique_sequence_and_restart(db: Database) -> None:
    from sqlmodel import select

    from rcp.scheduling.models import Meeting

    async with db.session() as s:
        meeting = (await s.exec(select(Meeting).where(Meeting.status == "closed"))).first()
    assert meeting is not None and meeting.id is not None
    log = SqlEventLog(db)
    start = max([e.seq for e in await log.since(meeting.id, 0)], default=0)
    view = View(study_uid="1.2.3", slice=4, pan=(10.5, 20.0))
    events = [
        _joined(start + 1, 1, "x", 0),
        ViewChanged(seq=start + 2, at=T0, actor=1, view=view),
    ]
    await log.append(meeting.id, events)
    with pytest.raises(SequenceTaken):
        await log.append(meeting.id, [ViewChanged(seq=start + 2, at=T0, actor=1, view=view)])
    again = await log.since(meeting.id, start)
    assert again == events
    # A restarted server folds the log into the same state.
    state = await load_state(log, RoomState(meeting_id=meeting.id))
    assert state.view == view and state.participants[1].connected


async def test_memory_bus_delivers_in_publish_order() -> None:
    bus = bus_from_url("")
    assert isinstance(bus, MemoryBus)
    async with bus.subscribe("room:1") as sub:
        for i in range(5):
            await bus.publish("room:1", str(i))
        await bus.publish("room:2", "elsewhere")
        received = []
        async for message in sub:
            received.append(message)
            if len(received) == 5:
                break
    assert received == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="RCP_REDIS_URL"):
        bus_from_url("kafka://x")


@pytest.mark.redis
async def test_redis_bus_fans_out_to_every_node_in_order() -> None:
    channel = f"test-{secrets.token_hex(4)}:room:1"
    nodes = [RedisBus("redis://127.0.0.1:6379/0"), RedisBus("redis://127.0.0.1:6379/0")]
    for node in nodes:
        await node.connect()
    try:
        async with nodes[0].subscribe(channel) as a, nodes[1].subscribe(channel) as b:
            for i in range(20):
                await nodes[i % 2].publish(channel, str(i))

            async def first(sub: object, n: int) -> list[str]:
                got: list[str] = []
                async for m in sub:  # type: ignore[attr-defined]
                    got.append(m)
                    if len(got) == n:
                        return got
                return got

            async with asyncio.timeout(10):
                got_a, got_b = await asyncio.gather(first(a, 20), first(b, 20))
        assert got_a == got_b == [str(i) for i in range(20)]
    finally:
        for node in nodes:
            await node.disconnect()


def test_public_surface_is_pinned() -> None:
    import rcp.room

    assert sorted(rcp.room.__all__) == [
        "AgendaItem",
        "Attendance",
        "Connection",
        "EventLog",
        "LiveRoom",
        "MemoryEventLog",
        "RoomConfig",
        "RoomState",
        "Rooms",
        "SqlEventLog",
        "Stay",
        "apply",
        "attendance",
        "decide",
        "meeting_attendance",
        "open_rooms",
    ]
    for name in rcp.room.__all__:
        assert getattr(rcp.room, name) is not None
