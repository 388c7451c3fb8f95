"""What participants ask the room to do, parsed from JSON messages whatever the transport.

A message arrives as a dict with a ``"type"`` (over the WebSocket, or the WebRTC ``view`` / ``pointer`` data
channels); :func:`parse_command` turns it into one of these dataclasses or raises :class:`rcp.errors.Invalid`
naming the field. Whether the command is *allowed* is decided against the room state by
:func:`rcp.room.state.decide`; the server itself issues ``Join``, ``Leave`` and ``Tick``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rcp.errors import BadRequest, Invalid
from rcp.room.events import LAYOUTS, MAX_VIEWPORTS, Participant

__all__ = [
    "AddMark",
    "ChangeView",
    "CloseCase",
    "Command",
    "HandOver",
    "Join",
    "Leave",
    "NextCase",
    "NoteDecisionField",
    "NoteDecisionSigned",
    "ReleaseFloor",
    "RemoveMark",
    "RequestFloor",
    "SetCase",
    "SetMedia",
    "SetMode",
    "SetPath",
    "TakeFloor",
    "Tick",
    "WithdrawRequest",
    "parse_command",
    "parse_pointer",
    "view_command",
    "viewport_changes",
]

#: Image coordinates are bounded by Rows/Columns (US, at most 65535), with room for a pointer just off the edge.
_MAX_COORD = 70000.0
_MAX_TEXT = 500


@dataclass(frozen=True)
class Command:
    """Base of all commands."""


@dataclass(frozen=True)
class Join(Command):
    participant: Participant


@dataclass(frozen=True)
class Leave(Command):
    connection: str
    reason: str = "left"


@dataclass(frozen=True)
class NoteLink(Command):
    """Issued by the server's heartbeat (never parsed from a participant): ``connection`` went silent
    (``unstable``) or is heard again."""

    connection: str
    unstable: bool


@dataclass(frozen=True)
class Tick(Command):
    """Time passes: the floor returns to the coordinator when the presenter has been gone too long."""


@dataclass(frozen=True)
class NoteDecisionField(Command):
    """Issued by the server (never parsed from a participant): a decision field was saved, tell everyone."""

    case_id: int
    field: str
    version: int


@dataclass(frozen=True)
class NoteDecisionSigned(Command):
    """Issued by the server after a signature committed: version ``number`` of the case's decision exists."""

    case_id: int
    number: int


@dataclass(frozen=True)
class SetPath(Command):
    path: Literal["ws", "dc"]


@dataclass(frozen=True)
class TakeFloor(Command):
    pass


@dataclass(frozen=True)
class RequestFloor(Command):
    pass


@dataclass(frozen=True)
class WithdrawRequest(Command):
    pass


@dataclass(frozen=True)
class HandOver(Command):
    to: int


@dataclass(frozen=True)
class ReleaseFloor(Command):
    pass


@dataclass(frozen=True)
class SetMode(Command):
    mode: Literal["follow", "free"]


@dataclass(frozen=True)
class SetMedia(Command):
    """The participant's microphone and camera as their browser has them: shown on everyone's tile."""

    audio_muted: bool
    video_off: bool


@dataclass(frozen=True)
class SetCase(Command):
    case_id: int


@dataclass(frozen=True)
class NextCase(Command):
    pass


@dataclass(frozen=True)
class CloseCase(Command):
    """The chair ends the current case's discussion without opening another: its attendance is recorded, and a
    case closed without quorum goes back on the board's next meeting (rcp.room.record)."""


@dataclass(frozen=True)
class ChangeView(Command):
    """Some fields of the shared view; the others keep their value.

    ``changes`` holds the layout and viewport 0's fields; ``others[i]`` the changed fields of viewport i + 1
    (empty: unchanged), so scrolling the right viewport of a 1x2 layout is ``others=({"slice": 12},)``.
    """

    changes: Mapping[str, Any] = field(default_factory=dict)
    others: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class AddMark(Command):
    kind: Literal["annotation", "key_image"]
    sop_uid: str
    frame: int = 1
    points: tuple[tuple[float, float], ...] = ()
    label: str = ""
    study_uid: str = ""
    series_uid: str = ""


@dataclass(frozen=True)
class RemoveMark(Command):
    mark_id: int


def _int(msg: Mapping[str, Any], name: str, *, minimum: int = 0) -> int:
    value = msg.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Invalid(
            f"'{name}' must be a whole number >= {minimum}.", fields={name: "whole number expected"}
        )
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"'{name}' must be true or false.", fields={name: "boolean expected"})
    return value


def _number(value: Any, name: str, *, low: float = -_MAX_COORD, high: float = _MAX_COORD) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"'{name}' must be a finite number.", fields={name: "number expected"})
    if not low <= float(value) <= high:
        raise Invalid(f"'{name}' must be between {low} and {high}.", fields={name: "out of range"})
    return float(value)


def _uid(value: Any, name: str, *, empty: bool = True) -> str:
    # DICOM UIDs: digits and dots, at most 64 characters (PS3.5 9.1).
    if not isinstance(value, str) or len(value) > 64 or any(c not in "0123456789." for c in value):
        raise Invalid(
            f"'{name}' must be a DICOM UID (digits and dots, at most 64).", fields={name: "UID expected"}
        )
    if not value and not empty:
        raise Invalid(f"'{name}' must not be empty.", fields={name: "UID expected"})
    return value


def _point(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise Invalid(f"'{name}' must be [column, row].", fields={name: "[column, row] expected"})
    return (_number(value[0], name), _number(value[1], name))


#: The fields of one viewport in a view message (the flat ones are viewport 0; ``viewports`` lists them all).
VIEWPORT_FIELDS = frozenset(
    {"study_uid", "series_uid", "slice", "window_center", "window_width", "zoom", "pan", "invert"}
)


def viewport_changes(msg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The viewport fields present in ``msg``, each checked; errors name the field as ``prefix + name``."""
    changes: dict[str, Any] = {}
    for name in ("study_uid", "series_uid"):
        if name in msg:
            changes[name] = _uid(msg[name], prefix + name)
    if "slice" in msg:
        value = msg["slice"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Invalid(
                f"'{prefix}slice' must be a whole number >= 0.",
                fields={prefix + "slice": "whole number expected"},
            )
        changes["slice"] = value
    for name in ("window_center", "window_width"):
        if name in msg:
            changes[name] = (
                None if msg[name] is None else _number(msg[name], prefix + name, low=-1e7, high=1e7)
            )
    if changes.get("window_width") is not None and changes["window_width"] < 1:
        raise Invalid(
            f"'{prefix}window_width' must be at least 1 (PS3.3 C.11.2.1.2).",
            fields={prefix + "window_width": ">= 1"},
        )
    if "zoom" in msg:
        changes["zoom"] = _number(msg["zoom"], prefix + "zoom", low=0.05, high=64.0)
    if "pan" in msg:
        changes["pan"] = None if msg["pan"] is None else _point(msg["pan"], prefix + "pan")
    if "invert" in msg:
        changes["invert"] = _bool(msg["invert"], prefix + "invert")
    return changes


def view_command(msg: Mapping[str, Any]) -> ChangeView:
    """A ``view`` message as a command; unknown fields are refused (typos do not pass silently).

    Two forms: flat viewport fields (viewport 0, as older clients send), or ``viewports``: a list of 1 to
    4 objects, one per viewport of the layout in order, each with only its changed fields::

        {"type": "view", "layout": "1x2", "viewports": [{}, {"slice": 12}]}
    """
    allowed = VIEWPORT_FIELDS | {"layout", "viewports"}
    unknown = sorted(set(msg) - allowed - {"type", "id"})
    if unknown:
        raise Invalid(
            f"Unknown view field(s): {', '.join(unknown)[:200]}.", fields={u[:40]: "unknown" for u in unknown}
        )
    changes = viewport_changes(msg)
    others: tuple[dict[str, Any], ...] = ()
    if "viewports" in msg:
        if changes:
            raise Invalid(
                "Send viewport fields either flat (viewport 0) or in 'viewports', not both.",
                fields={"viewports": "not with flat viewport fields"},
            )
        listed = msg["viewports"]
        if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_VIEWPORTS:
            raise Invalid(
                f"'viewports' must be a list of 1 to {MAX_VIEWPORTS} viewports.",
                fields={"viewports": f"1 to {MAX_VIEWPORTS} viewports"},
            )
        described: list[dict[str, Any]] = []
        for index, entry in enumerate(listed):
            prefix = f"viewports[{index}]."
            if not isinstance(entry, dict):
                raise Invalid(
                    f"'viewports[{index}]' must be an object.", fields={prefix[:-1]: "object expected"}
                )
            extra = sorted(set(entry) - VIEWPORT_FIELDS)
            if extra:
                raise Invalid(
                    f"Unknown viewport field(s) in viewports[{index}]: {', '.join(extra)[:200]}.",
                    fields={(prefix + u)[:60]: "unknown" for u in extra},
                )
            described.append(viewport_changes(entry, prefix))
        changes, others = described[0], tuple(described[1:])
    if "layout" in msg:
        if msg["layout"] not in LAYOUTS:
            raise Invalid(
                f"'layout' must be one of {', '.join(LAYOUTS)}.", fields={"layout": "unknown layout"}
            )
        changes["layout"] = msg["layout"]
    if not changes and not any(others):
        raise Invalid("A view message needs at least one view field.", fields={"view": "empty"})
    return ChangeView(changes, others)


def view_changes(msg: Mapping[str, Any]) -> dict[str, Any]:
    """Viewport 0's and the layout's fields of a flat ``view`` message (see :func:`view_command`)."""
    return dict(view_command(msg).changes)


def parse_command(msg: Mapping[str, Any]) -> Command:
    """A participant's message as a command; :class:`Invalid` or :class:`BadRequest` when it is not one."""
    kind = msg.get("type")
    if kind == "floor.take":
        return TakeFloor()
    if kind == "floor.request":
        return RequestFloor()
    if kind == "floor.withdraw":
        return WithdrawRequest()
    if kind == "floor.release":
        return ReleaseFloor()
    if kind == "floor.handover":
        return HandOver(_int(msg, "to", minimum=1))
    if kind == "mode":
        if msg.get("mode") not in ("follow", "free"):
            raise Invalid("'mode' must be follow or free.", fields={"mode": "follow or free"})
        return SetMode(msg["mode"])
    if kind == "media.state":
        return SetMedia(
            _bool(msg.get("audio_muted"), "audio_muted"), _bool(msg.get("video_off"), "video_off")
        )
    if kind == "path":
        if msg.get("path") not in ("ws", "dc"):
            raise Invalid("'path' must be ws or dc.", fields={"path": "ws or dc"})
        return SetPath(msg["path"])
    if kind == "case.set":
        return SetCase(_int(msg, "case_id", minimum=1))
    if kind == "case.next":
        return NextCase()
    if kind == "case.close":
        return CloseCase()
    if kind == "view":
        return view_command(msg)
    if kind == "mark.add":
        if msg.get("kind") not in ("annotation", "key_image"):
            raise Invalid(
                "'kind' must be annotation or key_image.", fields={"kind": "annotation or key_image"}
            )
        points = msg.get("points", [])
        if not isinstance(points, list) or len(points) > 64:
            raise Invalid("'points' must be a list of at most 64 [column, row].", fields={"points": "list"})
        label = msg.get("label", "")
        if not isinstance(label, str) or len(label) > _MAX_TEXT:
            raise Invalid(
                f"'label' must be text of at most {_MAX_TEXT} characters.", fields={"label": "too long"}
            )
        frame = _int(msg, "frame", minimum=1) if "frame" in msg else 1
        return AddMark(
            kind=msg["kind"],
            sop_uid=_uid(msg.get("sop_uid"), "sop_uid", empty=False),
            frame=frame,
            points=tuple(_point(p, "points") for p in points),
            label=label,
            study_uid=_uid(msg.get("study_uid", ""), "study_uid"),
            series_uid=_uid(msg.get("series_uid", ""), "series_uid"),
        )
    if kind == "mark.remove":
        return RemoveMark(_int(msg, "mark_id", minimum=1))
    if not isinstance(kind, str):
        raise BadRequest("Every message needs a string 'type'.")
    raise BadRequest(f"Unknown message type {kind[:40]!r}.")


def parse_pointer(msg: Mapping[str, Any]) -> tuple[float | None, float | None, int, int]:
    """A pointer message ``{"type": "pointer", "x": col, "y": row, "slice": n, "viewport": v}``; x/y null hides it.

    The compact form ``{"type": "pointer", "p": [col, row, slice]}`` (or ``[col, row, slice, viewport]``) is
    accepted too (data channel). The viewport (0..3, default 0) says which viewport of the layout it is over.
    Returns ``(column, row, slice, viewport)``.
    """
    if "p" in msg:
        packed = msg["p"]
        if not isinstance(packed, list) or len(packed) not in (3, 4):
            raise Invalid(
                "'p' must be [column, row, slice] or [column, row, slice, viewport].",
                fields={"p": "[column, row, slice, viewport] expected"},
            )
        x, y, index = packed[:3]
        viewport = packed[3] if len(packed) == 4 else 0
    else:
        x, y, index = msg.get("x"), msg.get("y"), msg.get("slice", 0)
        viewport = msg.get("viewport", 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise Invalid("'slice' must be a whole number >= 0.", fields={"slice": "whole number expected"})
    if isinstance(viewport, bool) or not isinstance(viewport, int) or not 0 <= viewport < MAX_VIEWPORTS:
        raise Invalid(
            f"'viewport' must be a whole number from 0 to {MAX_VIEWPORTS - 1}.", fields={"viewport": "0 to 3"}
        )
    if x is None or y is None:
        return None, None, index, viewport
    return _number(x, "x"), _number(y, "y"), index, viewport
