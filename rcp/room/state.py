"""The room state as a pure reducer: ``apply(state, event) -> state`` and ``decide(state, command) -> events``.

Nothing here does I/O or reads a clock: time comes in as ``now``. The server folds the event log with
:func:`apply` to rebuild a room after a restart; a client that joins late receives :func:`snapshot_to_dict` and
then the events after the snapshot's ``seq``, and ends in the same state as one that was there all along
(tests/room/test_state.py checks exactly that).

Rules (issue 4):
- only the floor holder (presenter) moves the shared view and points;
- a coordinator takes the floor at any time and hands it over to anyone present; anyone takes a free floor;
  others *request* it and the coordinator decides;
- when the presenter drops, the floor stays theirs for ``floor_grace_s`` (a reconnect keeps it), then returns to
  the coordinator (or to nobody if no coordinator is present); during that grace period only the presenter (by
  reconnecting) or a coordinator gets it, whoever else asks is refused (issue 13);
- the coordinator moves the room from case to case; each participant follows or browses freely on their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rcp.clock import as_utc
from rcp.errors import Conflict, Forbidden, Invalid, NotFound
from rcp.i18n import N_
from rcp.room import commands as c
from rcp.room.events import (
    VISIBLE_VIEWPORTS,
    CaseChanged,
    DecisionFieldSaved,
    DecisionSigned,
    Event,
    FloorGranted,
    FloorRequested,
    FloorRequestWithdrawn,
    Mark,
    MarkAdded,
    MarkRemoved,
    ModeChanged,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantLink,
    ParticipantMedia,
    PathChanged,
    View,
    ViewChanged,
    Viewport,
    mark_from_dict,
    view_from_dict,
    view_to_dict,
)

__all__ = [
    "AgendaItem",
    "RoomState",
    "apply",
    "decide",
    "replay",
    "snapshot_from_dict",
    "snapshot_to_dict",
]

DEFAULT_FLOOR_GRACE_S = 15.0


@dataclass(frozen=True)
class AgendaItem:
    """A case on the meeting's agenda, in agenda order, with the studies it brings to the room."""

    case_id: int
    study_uids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RoomState:
    meeting_id: int
    #: Sequence number of the last applied event (0: nothing happened yet).
    seq: int = 0
    #: The agenda is the room's context, not an event: the cases rcp.scheduling.agenda offers for discussion, loaded
    #: when the room opens and again before the chair moves the room (rcp.room.live.LiveRoom.refresh_agenda).
    agenda: tuple[AgendaItem, ...] = ()
    participants: Mapping[int, Participant] = field(default_factory=dict)
    presenter: int | None = None
    #: When the presenter's connection went away; None while they are here.
    presenter_gone_at: datetime | None = None
    floor_requests: tuple[int, ...] = ()
    case_id: int | None = None
    view: View = field(default_factory=View)
    marks: Mapping[int, Mark] = field(default_factory=dict)
    floor_grace_s: float = DEFAULT_FLOOR_GRACE_S

    def present(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.connected]

    def coordinator(self) -> Participant | None:
        """The chair: the present coordinator who joined first (lowest user id breaks ties)."""
        chairs = [p for p in self.present() if p.chairs]
        return min(chairs, key=lambda p: p.user_id) if chairs else None

    def is_present(self, user_id: int) -> bool:
        found = self.participants.get(user_id)
        return found is not None and found.connected

    def case_index(self) -> int | None:
        for index, item in enumerate(self.agenda):
            if item.case_id == self.case_id:
                return index
        return None


# --- apply: event -> state (never fails on an event the server produced) ----------------------------------------


def _with_participant(state: RoomState, participant: Participant) -> dict[int, Participant]:
    participants = dict(state.participants)
    participants[participant.user_id] = participant
    return participants


def apply(state: RoomState, event: Event) -> RoomState:
    """The state after ``event``. Events must come in ``seq`` order; an old one is ignored."""
    if event.seq and event.seq <= state.seq:
        return state
    state = replace(state, seq=event.seq or state.seq + 1)
    if isinstance(event, ParticipantJoined):
        joined = event.participant
        previous = state.participants.get(joined.user_id)
        if previous is not None:
            # A rejoin (same person, new connection) keeps their follow / browse-freely choice. Not their
            # microphone / camera: those are the new connection's (as the event says, so a client applying it
            # agrees with us), and the browser sends ``media.state`` again after each welcome.
            joined = replace(joined, mode=previous.mode)
        state = replace(state, participants=_with_participant(state, joined))
        if state.presenter == joined.user_id:
            state = replace(state, presenter_gone_at=None)
        return state
    if isinstance(event, ParticipantLeft):
        found = state.participants.get(event.user_id)
        if found is None or (event.connection and found.connection != event.connection):
            return state  # a superseded connection leaving: the person is still here
        gone = replace(found, connected=False, unstable=False)
        state = replace(state, participants=_with_participant(state, gone))
        if state.presenter == event.user_id:
            state = replace(state, presenter_gone_at=as_utc(event.at))
        if event.user_id in state.floor_requests:
            state = replace(
                state, floor_requests=tuple(u for u in state.floor_requests if u != event.user_id)
            )
        return state
    if isinstance(event, ParticipantLink):
        found = state.participants.get(event.user_id)
        if found is None or not found.connected or found.connection != event.connection:
            return state  # about a connection that was superseded or has ended meanwhile
        return replace(state, participants=_with_participant(state, replace(found, unstable=event.unstable)))
    if isinstance(event, PathChanged | ModeChanged):
        found = state.participants.get(event.user_id)
        if found is None:
            return state
        changed = (
            replace(found, path=event.path)
            if isinstance(event, PathChanged)
            else replace(found, mode=event.mode)
        )
        return replace(state, participants=_with_participant(state, changed))
    if isinstance(event, ParticipantMedia):
        found = state.participants.get(event.user_id)
        if found is None:
            return state
        changed = replace(found, audio_muted=event.audio_muted, video_off=event.video_off)
        return replace(state, participants=_with_participant(state, changed))
    if isinstance(event, FloorRequested):
        if event.user_id in state.floor_requests:
            return state
        return replace(state, floor_requests=(*state.floor_requests, event.user_id))
    if isinstance(event, FloorRequestWithdrawn):
        return replace(state, floor_requests=tuple(u for u in state.floor_requests if u != event.user_id))
    if isinstance(event, FloorGranted):
        return replace(
            state,
            presenter=event.user_id,
            presenter_gone_at=None,
            floor_requests=tuple(u for u in state.floor_requests if u != event.user_id),
        )
    if isinstance(event, CaseChanged):
        return replace(state, case_id=event.case_id, view=event.view)
    if isinstance(event, ViewChanged):
        return replace(state, view=event.view)
    if isinstance(event, MarkAdded):
        marks = dict(state.marks)
        marks[event.mark.mark_id] = event.mark
        return replace(state, marks=marks)
    if isinstance(event, MarkRemoved):
        marks = {k: v for k, v in state.marks.items() if k != event.mark_id}
        return replace(state, marks=marks)
    return state


def replay(state: RoomState, events: Sequence[Event]) -> RoomState:
    for event in events:
        state = apply(state, event)
    return state


# --- decide: command -> events, or an error that says why ---------------------------------------------------------


def _floor_goes_to_chair(state: RoomState, *, leaving: int | None = None) -> int | None:
    chair = state.coordinator()
    if chair is None or chair.user_id == leaving:
        others = [p for p in state.present() if p.chairs and p.user_id != leaving]
        return min(others, key=lambda p: p.user_id).user_id if others else None
    return chair.user_id


def _actor(state: RoomState, actor: int) -> Participant:
    found = state.participants.get(actor)
    if found is None or not found.connected:
        raise Forbidden(N_("Join the room first: this participant is not present."))
    return found


def _series_with_study(changes: Mapping[str, Any], current: View | Viewport) -> dict[str, Any]:
    """The changes, with the series cleared when the study changes without one (a series belongs to its study)."""
    result = dict(changes)
    if "study_uid" in result and result["study_uid"] != current.study_uid and "series_uid" not in result:
        result["series_uid"] = ""
    return result


def decide(state: RoomState, command: c.Command, *, actor: int, now: datetime) -> list[Event]:
    """The events ``command`` by ``actor`` produces at ``now``, numbered after ``state.seq``.

    Raises Forbidden (not allowed for this participant), Conflict (not in the current state), NotFound.
    An empty list means nothing changes (e.g. a tick before the grace period ends).
    """
    now = as_utc(now)
    events = _decide(state, command, actor=actor, now=now)
    return [replace(e, seq=state.seq + i + 1) for i, e in enumerate(events)]


def _decide(state: RoomState, command: c.Command, *, actor: int, now: datetime) -> list[Event]:
    if isinstance(command, c.Join):
        joined = command.participant
        events: list[Event] = [ParticipantJoined(at=now, actor=actor, participant=joined)]
        if state.presenter is None and joined.chairs:
            events.append(FloorGranted(at=now, actor=None, user_id=joined.user_id, reason="join"))
        return events
    if isinstance(command, c.Leave):
        found = state.participants.get(actor)
        if found is None or not found.connected or found.connection != command.connection:
            return []
        return [
            ParticipantLeft(
                at=now, actor=actor, user_id=actor, connection=command.connection, reason=command.reason
            )
        ]
    if isinstance(command, c.NoteLink):
        found = state.participants.get(actor)
        if (found is None or not found.connected or found.connection != command.connection
                or found.unstable == command.unstable):
            return []
        return [ParticipantLink(at=now, actor=actor, user_id=actor, connection=command.connection,
                                unstable=command.unstable)]
    if isinstance(command, c.NoteDecisionField):
        # Server-issued after the minutes committed the save: the editor may have written from the case page,
        # without being in the room, so presence is not required.
        return [
            DecisionFieldSaved(
                at=now,
                actor=actor,
                case_id=command.case_id,
                field=command.field,
                version=command.version,
                editor_id=actor,
            )
        ]
    if isinstance(command, c.NoteDecisionSigned):
        return [
            DecisionSigned(
                at=now, actor=actor, case_id=command.case_id, number=command.number, signer_id=actor
            )
        ]
    if isinstance(command, c.Tick):
        gone = state.presenter_gone_at
        if state.presenter is None or gone is None or now - gone < timedelta(seconds=state.floor_grace_s):
            return []
        to = _floor_goes_to_chair(state, leaving=state.presenter)
        return [FloorGranted(at=now, actor=None, user_id=to, reason="grace")]

    me = _actor(state, actor)
    if isinstance(command, c.SetPath):
        return (
            []
            if me.path == command.path
            else [PathChanged(at=now, actor=actor, user_id=actor, path=command.path)]
        )
    if isinstance(command, c.SetMode):
        return (
            []
            if me.mode == command.mode
            else [ModeChanged(at=now, actor=actor, user_id=actor, mode=command.mode)]
        )
    if isinstance(command, c.SetMedia):
        if (me.audio_muted, me.video_off) == (command.audio_muted, command.video_off):
            return []
        return [
            ParticipantMedia(
                at=now,
                actor=actor,
                user_id=actor,
                audio_muted=command.audio_muted,
                video_off=command.video_off,
            )
        ]
    if isinstance(command, c.TakeFloor):
        if state.presenter == actor:
            return []
        # While the presenter is away (their grace period), the floor is still theirs: only their reconnect or the
        # chair takes it, so a dropped connection is not a window for whoever asks first.
        if state.presenter is not None and not me.chairs:
            if state.presenter_gone_at is not None:
                raise Forbidden(N_(
                    "The presenter's connection dropped and the floor is kept for them a few seconds: request "
                    "the floor and the coordinator will hand it over."
                ))
            raise Forbidden(N_(
                "Somebody else presents: request the floor and the coordinator will hand it over."
            ))
        return [FloorGranted(at=now, actor=actor, user_id=actor, reason="take")]
    if isinstance(command, c.RequestFloor):
        if state.presenter == actor:
            raise Conflict(N_("You already have the floor."))
        if actor in state.floor_requests:
            return []
        return [FloorRequested(at=now, actor=actor, user_id=actor)]
    if isinstance(command, c.WithdrawRequest):
        return (
            [FloorRequestWithdrawn(at=now, actor=actor, user_id=actor)]
            if actor in state.floor_requests
            else []
        )
    if isinstance(command, c.HandOver):
        if not me.chairs:
            raise Forbidden(N_("Only the coordinator hands the floor over; ask them, or release the floor."))
        if not state.is_present(command.to):
            raise NotFound(f"Participant {command.to} is not in the room.")
        if state.presenter == command.to:
            return []
        return [FloorGranted(at=now, actor=actor, user_id=command.to, reason="handover")]
    if isinstance(command, c.ReleaseFloor):
        if state.presenter != actor:
            raise Conflict(N_("You do not have the floor."))
        return [
            FloorGranted(
                at=now, actor=actor, user_id=_floor_goes_to_chair(state, leaving=actor), reason="release"
            )
        ]
    if isinstance(command, c.SetCase | c.NextCase):
        if not me.chairs:
            raise Forbidden(N_("Only the coordinator moves the room to another case."))
        if isinstance(command, c.SetCase):
            item = next((i for i in state.agenda if i.case_id == command.case_id), None)
            if item is None:
                raise NotFound(f"Case {command.case_id} is not on this meeting's agenda.")
        else:
            index = state.case_index()
            following = 0 if index is None else index + 1
            if following >= len(state.agenda):
                raise Conflict(N_("This was the last case of the agenda."))
            item = state.agenda[following]
        if item.case_id == state.case_id:
            return []
        view = View(study_uid=item.study_uids[0] if item.study_uids else "", layout=state.view.layout)
        return [CaseChanged(at=now, actor=actor, case_id=item.case_id, view=view)]
    if isinstance(command, c.CloseCase):
        if not me.chairs:
            raise Forbidden(N_("Only the coordinator closes the case under discussion."))
        if state.case_id is None:
            return []
        return [CaseChanged(at=now, actor=actor, case_id=None, view=View(layout=state.view.layout))]
    if isinstance(command, c.ChangeView):
        if state.presenter != actor:
            raise Forbidden(N_("Only the presenter moves the shared view: take the floor, or browse freely."))
        view = replace(state.view, **_series_with_study(command.changes, state.view))
        shown = VISIBLE_VIEWPORTS.get(view.layout, 1)
        if 1 + len(command.others) > shown:
            raise Invalid(
                f"The {view.layout} layout shows {shown} viewport(s), the message describes "
                f"{1 + len(command.others)}: change the layout in the same message or describe fewer.",
                fields={"viewports": f"at most {shown} for {view.layout}"},
            )
        # The shared view describes the viewports the layout shows: hidden ones are dropped, new ones start empty.
        others = list(view.others[: shown - 1])
        for index, delta in enumerate(command.others):
            if index >= len(others):
                others.append(Viewport())
            others[index] = replace(others[index], **_series_with_study(delta, others[index]))
        view = replace(view, others=tuple(others))
        return [] if view == state.view else [ViewChanged(at=now, actor=actor, view=view)]
    if isinstance(command, c.AddMark):
        if state.presenter != actor and not me.chairs:
            raise Forbidden(N_("Only the presenter or the coordinator marks images."))
        mark = Mark(
            mark_id=state.seq + 1,
            kind=command.kind,
            sop_uid=command.sop_uid,
            frame=command.frame,
            points=command.points,
            label=command.label,
            author=actor,
            case_id=state.case_id,
            # The client names the marked image's study and series; the shared view is the fallback.
            study_uid=command.study_uid or state.view.study_uid,
            series_uid=command.series_uid or (state.view.series_uid if not command.study_uid else ""),
        )
        return [MarkAdded(at=now, actor=actor, mark=mark)]
    if isinstance(command, c.RemoveMark):
        found_mark = state.marks.get(command.mark_id)
        if found_mark is None:
            raise NotFound(f"No mark {command.mark_id} in this room.")
        if found_mark.author != actor and not me.chairs:
            raise Forbidden(N_("Only the mark's author or the coordinator removes it."))
        return [MarkRemoved(at=now, actor=actor, mark_id=command.mark_id)]
    raise Conflict(f"The room does not handle {type(command).__name__}.")


def may_point(state: RoomState, actor: int) -> bool:
    """Pointer samples are the presenter's (PS: they are not events, see rcp.room.events.PointerSample)."""
    return state.presenter == actor and state.is_present(actor)


# --- snapshot: the state as JSON for (re)joining clients ------------------------------------------------------------


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def snapshot_to_dict(state: RoomState) -> dict[str, Any]:
    return {
        "meeting_id": state.meeting_id,
        "seq": state.seq,
        "agenda": [{"case_id": i.case_id, "study_uids": list(i.study_uids)} for i in state.agenda],
        "participants": [_plain(p) for p in sorted(state.participants.values(), key=lambda p: p.user_id)],
        "presenter": state.presenter,
        "presenter_gone_at": state.presenter_gone_at.isoformat() if state.presenter_gone_at else None,
        "floor_requests": list(state.floor_requests),
        "case_id": state.case_id,
        "view": view_to_dict(state.view),
        "marks": [_plain(m) for m in sorted(state.marks.values(), key=lambda m: m.mark_id)],
        "floor_grace_s": state.floor_grace_s,
    }


def snapshot_from_dict(data: Mapping[str, Any]) -> RoomState:
    gone = data.get("presenter_gone_at")
    return RoomState(
        meeting_id=int(data["meeting_id"]),
        seq=int(data["seq"]),
        agenda=tuple(AgendaItem(int(i["case_id"]), tuple(i["study_uids"])) for i in data["agenda"]),
        participants={int(p["user_id"]): Participant(**p) for p in data["participants"]},
        presenter=data["presenter"],
        presenter_gone_at=datetime.fromisoformat(gone) if gone else None,
        floor_requests=tuple(data["floor_requests"]),
        case_id=data["case_id"],
        view=view_from_dict(data["view"]),
        marks={int(m["mark_id"]): mark_from_dict(m) for m in data["marks"]},
        floor_grace_s=float(data["floor_grace_s"]),
    )
