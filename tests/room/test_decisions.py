"""The room's side of the decision: ``decision.field`` events (no text), attendance from presence, key images."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from rcp.minutes.versions import DraftField
from rcp.room import commands as c
from rcp.room.bus import MemoryBus
from rcp.room.decisions import (
    decision_broadcaster,
    key_images_of,
    present_user_ids,
    room_attendees,
    signature_broadcaster,
)
from rcp.room.events import (
    DecisionFieldSaved,
    DecisionSigned,
    Mark,
    Participant,
    event_from_dict,
    event_to_dict,
)
from rcp.room.live import Rooms
from rcp.room.log import MemoryEventLog
from rcp.room.state import AgendaItem, RoomState, apply, decide, replay

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def joined(state: RoomState, user: int, *, role: str = "clinician") -> RoomState:
    p = Participant(user_id=user, display_name=f"U{user}", specialty="surgeon", role=role, connection=f"c{user}")
    return replay(state, decide(state, c.Join(p), actor=user, now=NOW))


def test_a_saved_field_is_an_event_even_from_someone_outside_the_room() -> None:
    state = RoomState(meeting_id=1, agenda=(AgendaItem(10),))
    events = decide(state, c.NoteDecisionField(case_id=10, field="proposal", version=3), actor=7, now=NOW)
    assert events == [
        DecisionFieldSaved(seq=1, at=NOW, actor=7, case_id=10, field="proposal", version=3, editor_id=7)
    ]
    after = apply(state, events[0])
    assert after.seq == 1 and after.participants == state.participants
    wire = event_to_dict(events[0])
    assert wire["event"] == "decision.field" and event_from_dict(wire) == events[0]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_signature_is_announced_in_the_room() -> None:
    log = MemoryEventLog()
    rooms = Rooms(log=log, bus=MemoryBus(), node_id="n1")
    await signature_broadcaster(rooms)(5, 10, 1, 4)
    [event] = await log.since(5, 0)
    assert isinstance(event, DecisionSigned)
    assert (event.case_id, event.number, event.signer_id, event.actor) == (10, 1, 4, 4)
    assert event_from_dict(event_to_dict(event)) == event
    await rooms.close()


def test_participants_cannot_forge_a_decision_event() -> None:
    for kind in ("decision.field", "decision.signed"):
        with pytest.raises(Exception, match="Unknown message type"):
            c.parse_command({"type": kind, "case_id": 1, "field": "proposal", "version": 1, "number": 1})


@pytest.mark.asyncio(loop_scope="session")
async def test_the_broadcaster_logs_the_event_without_the_text() -> None:
    log = MemoryEventLog()
    rooms = Rooms(log=log, bus=MemoryBus(), node_id="n1")
    hook = decision_broadcaster(rooms)
    secret = "Lobectomie supérieure droite"
    await hook(5, 10, "proposal", DraftField(value={"details": secret}, version=2, editor_id=4))
    [event] = await log.since(5, 0)
    assert isinstance(event, DecisionFieldSaved)
    assert (event.case_id, event.field, event.version, event.editor_id) == (10, "proposal", 2, 4)
    assert secret not in json.dumps(event_to_dict(event))
    assert rooms.get(5) is None  # opened for the broadcast only, closed after
    await rooms.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_attendance_is_who_is_present_now() -> None:
    log = MemoryEventLog()
    rooms = Rooms(log=log, bus=MemoryBus(), node_id="n1")
    lookup = room_attendees(rooms)
    assert await lookup(3) is None  # nobody ever joined: the invitations decide
    state = joined(joined(joined(RoomState(meeting_id=3), 1), 2), 9, role="coordinator")
    state = replay(state, decide(state, c.Leave("c2"), actor=2, now=NOW))
    assert present_user_ids(state) == frozenset({1, 9})
    # The same answer from the log, on a node where the room is not open.
    assert await log.since(3, 0) == []
    seq_state = RoomState(meeting_id=3)
    built = []
    for user in (1, 2, 9):
        more = decide(seq_state, c.Join(Participant(user_id=user, display_name="x", connection=f"c{user}")),
                      actor=user, now=NOW)
        seq_state = replay(seq_state, more)
        built.extend(more)
    more = decide(seq_state, c.Leave("c2"), actor=2, now=NOW)
    built.extend(more)
    await log.append(3, built)
    assert await lookup(3) == frozenset({1, 9})
    await rooms.close()


def test_key_images_of_a_case_in_marking_order() -> None:
    marks = {
        4: Mark(mark_id=4, kind="key_image", sop_uid="1.2.3.2", author=1, case_id=10, study_uid="1.2",
                series_uid="1.2.3", label="lésion"),
        2: Mark(mark_id=2, kind="key_image", sop_uid="1.2.3.1", frame=3, author=1, case_id=10, study_uid="1.2",
                series_uid="1.2.3"),
        5: Mark(mark_id=5, kind="annotation", sop_uid="1.2.3.1", author=1, case_id=10, points=((1.0, 2.0),)),
        6: Mark(mark_id=6, kind="key_image", sop_uid="1.9", author=1, case_id=11, study_uid="1", series_uid="1.9"),
    }
    assert key_images_of(marks, 10) == [
        {"study_uid": "1.2", "series_uid": "1.2.3", "sop_uid": "1.2.3.1", "sop_class_uid": "", "frame": 3,
         "description": ""},
        {"study_uid": "1.2", "series_uid": "1.2.3", "sop_uid": "1.2.3.2", "sop_class_uid": "", "frame": None,
         "description": "lésion"},
    ]


def test_a_key_image_mark_carries_its_study_and_series() -> None:
    state = joined(RoomState(meeting_id=1, agenda=(AgendaItem(10, ("1.2",)),)), 9, role="coordinator")
    state = replay(state, decide(state, c.SetCase(10), actor=9, now=NOW))
    command = c.parse_command({"type": "mark.add", "kind": "key_image", "sop_uid": "1.2.3.4",
                               "study_uid": "1.2", "series_uid": "1.2.3"})
    [event] = decide(state, command, actor=9, now=NOW)
    mark = apply(state, event).marks[event.seq]
    assert (mark.study_uid, mark.series_uid, mark.case_id) == ("1.2", "1.2.3", 10)
    with pytest.raises(Exception, match="UID"):
        c.parse_command({"type": "mark.add", "kind": "key_image", "sop_uid": "1.2", "study_uid": "x"})
