"""The events of a live meeting room: what happened, in order, with a room-wide sequence number.

Every change of the room is one of these frozen dataclasses. They are the only thing stored in the room's
event log (``room_events``) and the only thing fanned out to participants, so a participant that applies them
in ``seq`` order, from a snapshot, holds exactly the server's state (see :func:`rcp.room.state.apply`).

Positions (pointer, annotations, pan) are in *image coordinates*: column and row of the DICOM frame
(PS3.3 C.7.6.3: Columns (0028,0011) x Rows (0028,0010)), so they land on the same anatomy at any window size.

Wire form (``event_to_dict``)::

    {"seq": 12, "event": "floor.granted", "at": "2026-11-23T14:02:00+00:00", "actor": 3, "user_id": 7,
     "reason": "handover"}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from rcp.clock import as_utc

__all__ = [
    "EVENT_TYPES",
    "LAYOUTS",
    "MAX_VIEWPORTS",
    "VISIBLE_VIEWPORTS",
    "CaseChanged",
    "DecisionFieldSaved",
    "DecisionSigned",
    "Event",
    "FloorGranted",
    "FloorRequestWithdrawn",
    "FloorRequested",
    "Mark",
    "MarkAdded",
    "MarkRemoved",
    "ModeChanged",
    "Participant",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantLink",
    "ParticipantMedia",
    "PathChanged",
    "PointerSample",
    "View",
    "ViewChanged",
    "Viewport",
    "event_from_dict",
    "event_to_dict",
]

Path = Literal["ws", "dc"]
Mode = Literal["follow", "free"]
#: Viewer layouts the room can impose (rows x columns of viewports).
LAYOUTS = ("1x1", "1x2", "2x2")  # the viewer's layouts (web/static/js/viewer-state.js)
#: How many viewports each layout shows; the shared view describes exactly those.
VISIBLE_VIEWPORTS = {"1x1": 1, "1x2": 2, "2x2": 4}
MAX_VIEWPORTS = 4


@dataclass(frozen=True, kw_only=True)
class Participant:
    """Someone in the room. The participant id is the user id: one seat per person, whatever the devices."""

    user_id: int
    display_name: str
    specialty: str = ""
    hospital: str = ""
    role: str = "clinician"
    connected: bool = True
    #: How messages reach this participant: the WebRTC data channel ("dc") or the WebSocket ("ws").
    path: Path = "ws"
    mode: Mode = "follow"
    #: The current connection; a newer connection of the same person supersedes it (no ghosts after Wi-Fi→4G).
    connection: str = ""
    #: The server node holding the connection (several nodes behind a load balancer).
    node: str = ""
    #: Microphone muted / camera off, as the participant's browser last said (``media.state``), so everyone's
    #: tile shows it. A new connection starts with the defaults: the browser says it again after each welcome.
    audio_muted: bool = False
    video_off: bool = False
    #: An external physician in through a join link: shown as "guest, invited as <specialty>" (rcp.auth.links).
    guest: bool = False
    #: Their connection missed heartbeats (silent for ``RoomConfig.unstable_after_s``) but is not yet given up
    #: (``heartbeat_timeout_s``): the list shows "connection unstable" before "gone" (issue 15, item 4).
    unstable: bool = False

    @property
    def chairs(self) -> bool:
        """Coordinators chair the meeting: they move the agenda and hand the floor over."""
        return self.role == "coordinator"


@dataclass(frozen=True, kw_only=True)
class Viewport:
    """What one more viewport of the layout shows (the second to fourth; the first is :class:`View`'s own fields).

    Radiologists compare the prior and the current study side by side (1x2) or four series at once (2x2), so
    every viewport the layout shows is part of the shared view, with the same fields as the first one.
    """

    study_uid: str = ""
    series_uid: str = ""
    slice: int = 0
    window_center: float | None = None
    window_width: float | None = None
    zoom: float = 1.0
    pan: tuple[float, float] | None = None
    invert: bool = False


@dataclass(frozen=True, kw_only=True)
class View:
    """The shared view the presenter drives and followers mirror.

    The flat fields are viewport 0 (as in logs written before layouts were shared); ``others`` are viewports
    1.. that the layout shows, at most ``VISIBLE_VIEWPORTS[layout] - 1`` of them (missing ones are empty).
    """

    study_uid: str = ""
    series_uid: str = ""
    #: Index of the displayed image in the series, 0-based.
    slice: int = 0
    #: VOI LUT window (PS3.3 C.11.2.1.2), in modality values (e.g. Hounsfield units); None = the image's own.
    window_center: float | None = None
    window_width: float | None = None
    #: Screen pixels per image pixel relative to "fit to viewport" (1.0 = fit).
    zoom: float = 1.0
    #: The image point (column, row) shown at the viewport centre; None = the image centre.
    pan: tuple[float, float] | None = None
    layout: str = "1x1"
    #: Monochrome display inverted (PS3.3 C.7.6.3.1.2 Photometric Interpretation MONOCHROME1 vs 2 look).
    invert: bool = False
    others: tuple[Viewport, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Mark:
    """An annotation or a key-image mark on one frame of one instance."""

    mark_id: int
    kind: Literal["annotation", "key_image"]
    sop_uid: str
    frame: int = 1
    #: (column, row) points in the frame; one point = arrow, two = line/measure, more = polygon; none for key images.
    points: tuple[tuple[float, float], ...] = ()
    label: str = ""
    author: int = 0
    case_id: int | None = None
    #: The study and series of the marked instance, for the Key Object Selection written on signature
    #: (PS3.3 C.17.2.1 Current Requested Procedure Evidence Sequence needs them); "" in marks logged before.
    study_uid: str = ""
    series_uid: str = ""


@dataclass(frozen=True, kw_only=True)
class PointerSample:
    """The presenter's pointer: never persisted, never sequenced, latest wins."""

    user_id: int
    #: None hides the pointer.
    column: float | None
    row: float | None
    slice: int = 0
    #: The viewport of the layout the pointer is over (0 = the first).
    viewport: int = 0

    def compact(self) -> list[Any]:
        """``[user, col, row, slice]`` (``+ [viewport]`` when not the first) with 0.1-pixel precision.

        20-30 bytes per sample on the wire; the viewport is left out when 0 so that single-viewport rooms and
        older clients see the same four-item samples as before.
        """
        col = None if self.column is None else round(self.column, 1)
        row = None if self.row is None else round(self.row, 1)
        packed: list[Any] = [self.user_id, col, row, self.slice]
        if self.viewport:
            packed.append(self.viewport)
        return packed


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all room events: a sequence number, when, and who caused it (None for the server)."""

    name: ClassVar[str] = ""
    #: Persisted in the room's log; all room events are (pointer samples are not events).
    seq: int = 0
    at: datetime
    actor: int | None = None


@dataclass(frozen=True, kw_only=True)
class ParticipantJoined(Event):
    name: ClassVar[str] = "participant.joined"
    participant: Participant


@dataclass(frozen=True, kw_only=True)
class ParticipantLeft(Event):
    name: ClassVar[str] = "participant.left"
    user_id: int
    connection: str = ""
    #: "left" (closed the page), "timeout" (heartbeat lost), "dropped" (stopped reading), "lost" (node gone).
    reason: str = "left"


@dataclass(frozen=True, kw_only=True)
class ParticipantLink(Event):
    """The server stopped hearing a participant's heartbeat (``unstable``), or hears it again.

    Issued by the node holding ``connection`` (rcp.room.live.LiveRoom's heartbeat), never by a client: the chair
    sees "connection unstable" a second or two before the person is marked gone, and a blip that heals clears it.
    """

    name: ClassVar[str] = "participant.link"
    user_id: int
    connection: str
    unstable: bool


@dataclass(frozen=True, kw_only=True)
class PathChanged(Event):
    name: ClassVar[str] = "participant.path"
    user_id: int
    path: Path


@dataclass(frozen=True, kw_only=True)
class ModeChanged(Event):
    name: ClassVar[str] = "participant.mode"
    user_id: int
    mode: Mode


@dataclass(frozen=True, kw_only=True)
class ParticipantMedia(Event):
    """A participant muted or unmuted their microphone, or turned their camera off or on."""

    name: ClassVar[str] = "participant.media"
    user_id: int
    audio_muted: bool
    video_off: bool


@dataclass(frozen=True, kw_only=True)
class FloorRequested(Event):
    name: ClassVar[str] = "floor.requested"
    user_id: int


@dataclass(frozen=True, kw_only=True)
class FloorRequestWithdrawn(Event):
    name: ClassVar[str] = "floor.withdrawn"
    user_id: int


@dataclass(frozen=True, kw_only=True)
class FloorGranted(Event):
    """The floor moves; ``user_id`` None means nobody presents."""

    name: ClassVar[str] = "floor.granted"
    user_id: int | None
    #: "take", "handover", "release", "grace" (presenter gone too long), "join" (first coordinator in).
    reason: str = "take"


@dataclass(frozen=True, kw_only=True)
class CaseChanged(Event):
    name: ClassVar[str] = "case.changed"
    case_id: int | None
    #: The shared view starts over on the case's first study.
    view: View = field(default_factory=View)


@dataclass(frozen=True, kw_only=True)
class ViewChanged(Event):
    """The whole new shared view (not a delta), so that applying it twice is harmless."""

    name: ClassVar[str] = "view.changed"
    view: View


@dataclass(frozen=True, kw_only=True)
class MarkAdded(Event):
    name: ClassVar[str] = "mark.added"
    mark: Mark


@dataclass(frozen=True, kw_only=True)
class MarkRemoved(Event):
    name: ClassVar[str] = "mark.removed"
    mark_id: int


@dataclass(frozen=True, kw_only=True)
class DecisionFieldSaved(Event):
    """A field of a case's decision draft was saved (rcp.minutes): participants fetch it again.

    Deliberately without the text: the room's log (``room_events``) and the Redis bus must not become a second,
    unaudited copy of the medical record. Each page reads the value through GET /api/cases/{id}/decision, which
    checks access and writes the read to the audit trail.
    """

    name: ClassVar[str] = "decision.field"
    case_id: int
    field: str
    version: int
    editor_id: int


@dataclass(frozen=True, kw_only=True)
class DecisionSigned(Event):
    """A version of a case's decision was signed (or a correction): pages read the decision again."""

    name: ClassVar[str] = "decision.signed"
    case_id: int
    number: int
    signer_id: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        ParticipantJoined,
        ParticipantLeft,
        ParticipantLink,
        PathChanged,
        ModeChanged,
        ParticipantMedia,
        FloorRequested,
        FloorRequestWithdrawn,
        FloorGranted,
        CaseChanged,
        ViewChanged,
        MarkAdded,
        MarkRemoved,
        DecisionFieldSaved,
        DecisionSigned,
    )
}

_ENVELOPE = ("seq", "at", "actor")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _viewport_values(data: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(data)
    if values.get("pan") is not None:
        values["pan"] = (float(values["pan"][0]), float(values["pan"][1]))
    return values


def _view(data: Mapping[str, Any]) -> View:
    values = _viewport_values(data)
    values["others"] = tuple(Viewport(**_viewport_values(o)) for o in values.get("others", ()))
    return View(**values)


def _mark(data: Mapping[str, Any]) -> Mark:
    values = dict(data)
    values["points"] = tuple((float(p[0]), float(p[1])) for p in values.get("points", ()))
    return Mark(**values)


def payload_of(event: Event) -> dict[str, Any]:
    """The event's own fields, without the envelope (what the log stores in its JSON column)."""
    return {
        f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event) if f.name not in _ENVELOPE
    }


def event_to_dict(event: Event) -> dict[str, Any]:
    body: dict[str, Any] = {
        "seq": event.seq,
        "event": event.name,
        "at": event.at.isoformat(),
        "actor": event.actor,
    }
    body.update(payload_of(event))
    return body


def event_from_parts(
    name: str, payload: Mapping[str, Any], *, seq: int, at: datetime, actor: int | None
) -> Event:
    """Rebuild an event from the log's columns or a wire dict; KeyError/TypeError/ValueError on a bad one."""
    cls = EVENT_TYPES[name]
    values: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "participant":
            values[key] = Participant(**value)
        elif key == "view":
            values[key] = _view(value)
        elif key == "mark":
            values[key] = _mark(value)
        else:
            values[key] = value
    return cls(seq=seq, at=as_utc(at), actor=actor, **values)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    payload = {k: v for k, v in data.items() if k not in {"seq", "event", "at", "actor", "type"}}
    return event_from_parts(
        str(data["event"]),
        payload,
        seq=int(data["seq"]),
        at=datetime.fromisoformat(str(data["at"])),
        actor=None if data.get("actor") is None else int(data["actor"]),
    )


def view_to_dict(view: View) -> dict[str, Any]:
    return dict(_plain(view))


def view_from_dict(data: Mapping[str, Any]) -> View:
    return _view(data)


def mark_from_dict(data: Mapping[str, Any]) -> Mark:
    return _mark(data)
