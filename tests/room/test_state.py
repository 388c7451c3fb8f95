"""The room reducer without any server: floor rules, follow / browse freely, snapshot + replay == live."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rcp.errors import Conflict, Forbidden, Invalid, NotFound
from rcp.room import commands as c
from rcp.room.events import FloorGranted, Participant, event_from_dict, event_to_dict
from rcp.room.state import replay, snapshot_from_dict, snapshot_to_dict
from tests.room.reducer import RADIO, T0, Room, full_room


def test_first_coordinator_gets_the_floor_and_seq_is_gap_free() -> None:
    room = full_room()
    assert room.state.presenter == 1
    assert [e.seq for e in room.log] == list(range(1, len(room.log) + 1))
    assert room.state.seq == len(room.log)


def test_only_the_presenter_moves_the_view() -> None:
    room = full_room()
    with pytest.raises(Forbidden):
        room.do(2, c.ChangeView({"slice": 3}))
    room.do(1, c.ChangeView({"study_uid": "1.2.3", "slice": 3, "window_center": 40.0, "window_width": 400.0}))
    assert room.state.view.slice == 3 and room.state.view.window_width == 400.0
    # The same view again changes nothing and numbers nothing.
    assert room.do(1, c.ChangeView({"slice": 3})) == []


def test_participant_requests_and_coordinator_hands_over() -> None:
    room = full_room()
    with pytest.raises(Forbidden):
        room.do(2, c.TakeFloor())
    room.do(2, c.RequestFloor())
    assert room.state.floor_requests == (2,)
    with pytest.raises(Forbidden):
        room.do(3, c.HandOver(2))
    room.do(1, c.HandOver(2))
    assert room.state.presenter == 2 and not room.state.floor_requests
    room.do(2, c.ChangeView({"slice": 7}))
    with pytest.raises(Forbidden):
        room.do(1, c.ChangeView({"slice": 8}))
    # The coordinator can always take it back; the presenter can give it back.
    room.do(1, c.TakeFloor())
    assert room.state.presenter == 1
    room.do(1, c.HandOver(3))
    room.do(3, c.ReleaseFloor())
    assert room.state.presenter == 1
    with pytest.raises(NotFound):
        room.do(1, c.HandOver(99))
    with pytest.raises(Conflict):
        room.do(2, c.ReleaseFloor())


def test_free_floor_can_be_taken_by_anybody() -> None:
    room = Room()
    room.join(RADIO)
    assert room.state.presenter is None
    room.do(2, c.TakeFloor())
    assert room.state.presenter == 2


def test_floor_returns_to_coordinator_after_grace_not_before() -> None:
    room = full_room()
    room.do(1, c.HandOver(2))
    room.do(2, c.Leave("c2", "timeout"))
    assert room.state.presenter == 2 and room.state.presenter_gone_at == T0
    room.now = T0 + timedelta(seconds=room.state.floor_grace_s - 1)
    assert room.do(0, c.Tick()) == []
    room.now = T0 + timedelta(seconds=room.state.floor_grace_s)
    (granted,) = room.do(0, c.Tick())
    assert isinstance(granted, FloorGranted)
    assert room.state.presenter == 1 and granted.reason == "grace"


def test_presenter_back_within_grace_keeps_the_floor() -> None:
    room = full_room()
    room.do(1, c.HandOver(2))
    room.do(2, c.Leave("c2"))
    room.now = T0 + timedelta(seconds=5)
    room.join(Participant(user_id=2, display_name="Radio", connection="c2-again"))
    room.now = T0 + timedelta(seconds=60)
    assert room.do(0, c.Tick()) == []
    assert room.state.presenter == 2


def test_during_the_grace_period_only_the_chair_takes_the_floor() -> None:
    """Issue 13: the presenter's dropped connection is no window for whoever asks first."""
    room = full_room()
    room.do(1, c.HandOver(2))
    room.do(2, c.Leave("c2", "timeout"))
    room.now = T0 + timedelta(seconds=1)
    with pytest.raises(Forbidden):
        room.do(3, c.TakeFloor())
    assert room.state.presenter == 2
    room.do(1, c.TakeFloor())
    assert room.state.presenter == 1 and room.state.presenter_gone_at is None


def test_superseded_connection_leaving_leaves_no_ghost_and_removes_nobody() -> None:
    room = full_room()
    room.join(Participant(user_id=3, display_name="Surg", connection="c3-4g"))
    # The old Wi-Fi connection times out later: the person is still here, once.
    assert room.do(3, c.Leave("c3", "timeout")) == []
    assert room.state.participants[3].connected and room.state.participants[3].connection == "c3-4g"
    assert len(room.state.present()) == 3


def test_follow_and_browse_freely_are_per_participant_and_survive_rejoin() -> None:
    room = full_room()
    room.do(3, c.SetMode("free"))
    assert room.state.participants[3].mode == "free" and room.state.participants[2].mode == "follow"
    room.do(3, c.Leave("c3"))
    room.join(Participant(user_id=3, display_name="Surg", connection="c3b"))
    assert room.state.participants[3].mode == "free"
    room.do(3, c.SetMode("follow"))
    assert room.state.participants[3].mode == "follow"  # type: ignore[comparison-overlap]  # mypy kept "free"


def test_cases_move_only_by_coordinator_and_reset_the_view() -> None:
    room = full_room()
    with pytest.raises(Forbidden):
        room.do(2, c.NextCase())
    room.do(1, c.NextCase())
    assert room.state.case_id == 10 and room.state.view.study_uid == "1.2.10"
    room.do(1, c.ChangeView({"slice": 30, "layout": "2x2"}))
    room.do(1, c.NextCase())
    assert room.state.case_id == 11 and room.state.view.slice == 0 and room.state.view.layout == "2x2"
    room.do(1, c.SetCase(12))
    with pytest.raises(Conflict):
        room.do(1, c.NextCase())
    with pytest.raises(NotFound):
        room.do(1, c.SetCase(99))


def test_marks_in_image_coordinates() -> None:
    room = full_room()
    (added,) = room.do(1, c.AddMark(kind="annotation", sop_uid="1.2.3.4", frame=1, points=((100.5, 200.0),)))
    mark_id = added.seq
    assert room.state.marks[mark_id].points == ((100.5, 200.0),)
    with pytest.raises(Forbidden):
        room.do(2, c.AddMark(kind="key_image", sop_uid="1.2.3.4"))
    with pytest.raises(Forbidden):
        room.do(2, c.RemoveMark(mark_id))
    room.do(1, c.RemoveMark(mark_id))
    assert room.state.marks == {}


def test_absent_participant_cannot_act() -> None:
    room = full_room()
    room.do(2, c.Leave("c2"))
    with pytest.raises(Forbidden):
        room.do(2, c.RequestFloor())


def _busy_room() -> Room:
    room = full_room()
    room.do(1, c.NextCase())
    room.do(2, c.RequestFloor())
    room.do(1, c.HandOver(2))
    room.do(2, c.ChangeView({"series_uid": "1.2.10.1", "slice": 12, "pan": (256.0, 240.5), "zoom": 2.0}))
    room.do(2, c.AddMark(kind="key_image", sop_uid="1.2.10.1.12"))
    room.do(3, c.SetMode("free"))
    room.do(3, c.Leave("c3", "timeout"))
    room.do(2, c.Leave("c2", "dropped"))
    return room


def test_late_join_snapshot_plus_replay_equals_live_state() -> None:
    room = _busy_room()
    half = len(room.log) // 2
    # A client that saw the first half as a snapshot (through JSON, as on the wire) ...
    snapshot = snapshot_from_dict(snapshot_to_dict(replay(room.initial, room.log[:half])))
    # ... and then receives the rest of the events as JSON.
    rest = [event_from_dict(event_to_dict(e)) for e in room.log[half:]]
    assert replay(snapshot, rest) == room.state
    # A server restart folds the whole log.
    assert replay(room.initial, [event_from_dict(event_to_dict(e)) for e in room.log]) == room.state
    # Replaying events twice (a resume that overlaps) changes nothing.
    assert replay(room.state, room.log) == room.state


def test_parse_command_refuses_bad_messages_naming_the_field() -> None:
    with pytest.raises(Invalid) as caught:
        c.parse_command({"type": "view", "slice": -1})
    assert "slice" in caught.value.fields
    with pytest.raises(Invalid):
        c.parse_command({"type": "view", "zoom": float("nan")})
    with pytest.raises(Invalid):
        c.parse_command({"type": "view", "colour": "red"})
    with pytest.raises(Invalid):
        c.parse_command({"type": "view", "study_uid": "1.2.<script>"})
    with pytest.raises(Invalid):
        c.parse_command({"type": "mark.add", "kind": "annotation", "sop_uid": "1.2", "points": [[1]]})
    assert c.parse_command({"type": "floor.handover", "to": 4}) == c.HandOver(4)
    assert c.parse_pointer({"type": "pointer", "p": [1.25, 2, 3]}) == (1.25, 2.0, 3, 0)
    assert c.parse_pointer({"type": "pointer", "x": None, "y": None}) == (None, None, 0, 0)
