"""Every viewport of the layout is part of the shared view: prior vs current side by side (1x2), or 2x2.

The reducer alone, no server: a view message describes the viewports the layout shows, bad ones are refused
naming the field, and a snapshot plus the replayed log gives the live state.
"""

from __future__ import annotations

import pytest

from rcp.errors import Invalid
from rcp.room import commands as c
from rcp.room.events import PointerSample, View, Viewport, event_from_dict, event_to_dict
from rcp.room.state import replay, snapshot_from_dict, snapshot_to_dict
from tests.room.reducer import Room, full_room

CURRENT, PRIOR = "1.2.10", "1.2.9"


def _presenting_radiologist() -> Room:
    room = full_room()
    room.do(1, c.NextCase())
    room.do(1, c.HandOver(2))
    return room


def _view(room: Room, msg: dict[str, object]) -> None:
    room.do(2, c.parse_command({"type": "view", **msg}))


def test_side_by_side_layout_shares_both_viewports() -> None:
    room = _presenting_radiologist()
    _view(
        room,
        {
            "layout": "1x2",
            "viewports": [
                {"series_uid": "1.2.10.1", "slice": 5},
                {
                    "study_uid": PRIOR,
                    "series_uid": "1.2.9.1",
                    "slice": 7,
                    "window_center": -600,
                    "window_width": 1500,
                },
            ],
        },
    )
    view = room.state.view
    assert (view.layout, view.study_uid, view.series_uid, view.slice) == ("1x2", CURRENT, "1.2.10.1", 5)
    assert view.others == (
        Viewport(study_uid=PRIOR, series_uid="1.2.9.1", slice=7, window_center=-600.0, window_width=1500.0),
    )
    # Scrolling the right viewport only: viewport 0 keeps its slice, the message names only what changed.
    (event,) = room.do(2, c.parse_command({"type": "view", "viewports": [{}, {"slice": 8, "invert": True}]}))
    assert (
        room.state.view.slice == 5
        and room.state.view.others[0].slice == 8
        and room.state.view.others[0].invert
    )
    assert event_from_dict(event_to_dict(event)) == event
    # The same description twice is no event (followers are not woken for nothing).
    assert room.do(2, c.parse_command({"type": "view", "viewports": [{"slice": 5}, {"slice": 8}]})) == []


def test_a_new_study_in_a_viewport_drops_its_series() -> None:
    room = _presenting_radiologist()
    _view(room, {"layout": "1x2", "viewports": [{}, {"study_uid": PRIOR, "series_uid": "1.2.9.1"}]})
    _view(room, {"viewports": [{}, {"study_uid": "1.2.8"}]})
    assert room.state.view.others[0].series_uid == ""


def test_layout_bounds_the_viewports() -> None:
    room = _presenting_radiologist()
    with pytest.raises(Invalid) as caught:
        _view(room, {"viewports": [{}, {"slice": 3}]})  # still 1x1
    assert "viewports" in caught.value.fields
    _view(room, {"layout": "2x2", "viewports": [{}, {}, {}, {"study_uid": PRIOR, "slice": 2}]})
    assert room.state.view.others == (Viewport(), Viewport(), Viewport(study_uid=PRIOR, slice=2))
    # Back to one viewport: the hidden ones leave the shared view, and come back empty.
    _view(room, {"layout": "1x1"})
    assert not room.state.view.others
    _view(room, {"layout": "1x2"})
    assert not room.state.view.others


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"viewports": []}, "viewports"),
        ({"viewports": [{}, {}, {}, {}, {}]}, "viewports"),
        ({"viewports": {"0": {}}}, "viewports"),
        ({"viewports": [{}, "slice 3"]}, "viewports[1]"),
        ({"viewports": [{}, {"slice": -1}]}, "viewports[1].slice"),
        ({"viewports": [{}, {"slice": True}]}, "viewports[1].slice"),
        ({"viewports": [{}, {"zoom": 1e9}]}, "viewports[1].zoom"),
        ({"viewports": [{}, {"window_width": 0}]}, "viewports[1].window_width"),
        ({"viewports": [{}, {"pan": [1]}]}, "viewports[1].pan"),
        ({"viewports": [{}, {"invert": "yes"}]}, "viewports[1].invert"),
        ({"viewports": [{}, {"series_uid": "1.2.x"}]}, "viewports[1].series_uid"),
        ({"viewports": [{}, {"layout": "2x2"}]}, "viewports[1].layout"),
        ({"slice": 3, "viewports": [{}]}, "viewports"),
        ({"viewports": [{}, {}]}, "view"),
    ],
)
def test_bad_view_messages_are_refused_naming_the_field(msg: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as caught:
        c.parse_command({"type": "view", **msg})
    assert field in caught.value.fields


def test_flat_messages_still_drive_viewport_zero() -> None:
    command = c.parse_command({"type": "view", "slice": 4, "layout": "1x2"})
    assert command == c.ChangeView({"slice": 4, "layout": "1x2"})
    # Logs written before layouts were shared have no "others" nor "invert".
    old = {
        "study_uid": "1.2",
        "series_uid": "",
        "slice": 3,
        "window_center": None,
        "window_width": None,
        "zoom": 1.0,
        "pan": [1.0, 2.0],
        "layout": "1x2",
    }
    event = event_from_dict(
        {"seq": 4, "event": "view.changed", "at": "2026-11-23T14:00:00+00:00", "actor": 2, "view": old}
    )
    assert event.view == View(study_uid="1.2", slice=3, pan=(1.0, 2.0), layout="1x2")  # type: ignore[attr-defined]


def test_snapshot_plus_replay_equals_live_with_several_viewports() -> None:
    room = _presenting_radiologist()
    _view(
        room,
        {
            "layout": "2x2",
            "viewports": [
                {"series_uid": "1.2.10.1", "slice": 5, "zoom": 2.0, "pan": [100.5, 80.0]},
                {"study_uid": PRIOR, "series_uid": "1.2.9.1", "slice": 7},
                {"study_uid": PRIOR, "series_uid": "1.2.9.2", "window_center": 40, "window_width": 400},
                {"series_uid": "1.2.10.2", "invert": True, "pan": [3, 4]},
            ],
        },
    )
    for index in range(8, 12):
        _view(room, {"viewports": [{}, {"slice": index}]})
    _view(room, {"layout": "1x2"})
    for half in range(len(room.log)):
        snapshot = snapshot_from_dict(snapshot_to_dict(replay(room.initial, room.log[:half])))
        rest = [event_from_dict(event_to_dict(e)) for e in room.log[half:]]
        assert replay(snapshot, rest) == room.state
    assert room.state.view.others == (Viewport(study_uid=PRIOR, series_uid="1.2.9.1", slice=11),)


def test_pointer_names_its_viewport_compactly() -> None:
    assert c.parse_pointer({"type": "pointer", "p": [1.25, 2, 3, 1]}) == (1.25, 2.0, 3, 1)
    assert c.parse_pointer({"type": "pointer", "x": 4, "y": 5, "slice": 6, "viewport": 3}) == (4.0, 5.0, 6, 3)
    for bad in ([1, 2, 3, 4], [1, 2, 3, -1], [1, 2, 3, True], [1, 2, 3, 0, 0]):
        with pytest.raises(Invalid):
            c.parse_pointer({"type": "pointer", "p": bad})
    assert PointerSample(user_id=2, column=1.04, row=2.0, slice=3).compact() == [2, 1.0, 2.0, 3]
    assert PointerSample(user_id=2, column=1.04, row=2.0, slice=3, viewport=1).compact() == [
        2,
        1.0,
        2.0,
        3,
        1,
    ]
