"""The room and the decision being written in it (issue 6, "writing it in the room").

Links between the live room (rcp.room) and the minutes (rcp.minutes), each a function the app's lifespan
installs once the rooms exist:

- :func:`decision_broadcaster`: after the minutes commit a draft field, the meeting's room gets a
  ``decision.field`` event (case, field name, version, editor) and every page fetches the field again.
- :func:`signature_broadcaster`: after a signature commits, a ``decision.signed`` event (case, version number).
- :func:`room_attendees`: the case's attendance is frozen when each discussion ends (rcp.room.record, into
  ``case_attendance``); this lookup records any ended discussion still missing from the record, then says who is
  connected to a discussion of the case still under way, so that the quorum shown while writing, the one checked at
  signature and who may sign are those of the people who took part (INCa: the attendees are the members who took
  part), also once the meeting is over.
- :func:`rcp.room.record.attendance_recorder`: the ``on_events`` hook that records a discussion when it ends.
- :func:`key_images_to_draft`: key-image marks placed in the room become the case's ``key_images`` draft field,
  from which the signature's Key Object Selection (IHE Key Image Note, PS3.3 A.35.4) is written to the archive.

Why the text is not in the event: the room's log is persisted (``room_events``) and fanned out on Redis; neither
is the medical record, and neither is audited. Pages read the text with GET /api/cases/{id}/decision (access
checked, read audited, DCM 110110). The cost is one small read per participant per save, which the form's
debounced saves (one per pause in typing) keep low.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rcp.errors import RcpError
from rcp.room import commands as c
from rcp.room.events import Event, Mark, MarkAdded, MarkRemoved
from rcp.room.live import LiveRoom, Rooms
from rcp.room.log import case_presence
from rcp.room.record import attendance_recorder, record_ended

__all__ = [
    "AttendeeLookup",
    "FieldHook",
    "SignedNotice",
    "decision_broadcaster",
    "key_images_of",
    "key_images_to_draft",
    "room_attendees",
    "signature_broadcaster",
    "wire_decisions",
]

logger = logging.getLogger(__name__)

#: (meeting id, case id, field name, saved field): rcp.minutes.store.FieldHook.
FieldHook = Callable[[int, int, str, Any], Awaitable[None]]
#: (meeting id, case id) -> user ids connected to the case's discussion under way (empty when none is), or None
#: when the room never had anybody (attendance then comes from the invitations). Call it outside any open session
#: of the caller: it records ended discussions in its own transaction first.
AttendeeLookup = Callable[[int, int], Awaitable[frozenset[int] | None]]


def decision_broadcaster(rooms: Rooms) -> FieldHook:
    """A hook for the minutes routes: tell the meeting's room that a decision field was saved.

    The room is acquired even if no participant is on this node: the event goes through the log and the bus, so
    participants on other nodes see it too (issue 4, several nodes).
    """

    async def broadcast(meeting_id: int, case_id: int, name: str, field: Any) -> None:
        room = await rooms.acquire(meeting_id)
        try:
            await room.execute(
                c.NoteDecisionField(case_id=case_id, field=name, version=int(field.version)),
                actor=int(field.editor_id or 0),
            )
        finally:
            await rooms.release(room)

    return broadcast


#: (meeting id, case id, version number, signer id), called by the minutes routes after a signature commits.
SignedNotice = Callable[[int, int, int, int], Awaitable[None]]


def signature_broadcaster(rooms: Rooms) -> SignedNotice:
    """Tell the meeting's room that a version was signed, so every page shows it signed (and hides the button)."""

    async def broadcast(meeting_id: int, case_id: int, number: int, signer_id: int) -> None:
        room = await rooms.acquire(meeting_id)
        try:
            await room.execute(c.NoteDecisionSigned(case_id=case_id, number=number), actor=signer_id)
        finally:
            await rooms.release(room)

    return broadcast


def room_attendees(rooms: Rooms, db: Any = None) -> AttendeeLookup:
    """Who is connected to the case's discussion under way, from the room's log (any node), after recording
    (with ``db``) any ended discussion of the meeting not recorded yet (rcp.room.record.record_ended).

    Not "who is connected now": a fiche is signed the same evening or the next day, when the room is empty, from
    the record; someone who enters the room after the case was discussed was not there for it.
    """

    async def lookup(meeting_id: int, case_id: int) -> frozenset[int] | None:
        if db is not None:
            await record_ended(db, rooms.log, meeting_id)
        return await case_presence(rooms.log, meeting_id, case_id, under_way=db is not None)

    return lookup


def key_images_of(marks: Any, case_id: int) -> list[dict[str, Any]]:
    """The ``key_images`` draft value for ``case_id``: its key-image marks in marking order (fiche.KeyImage)."""
    found: list[Mark] = sorted(
        (m for m in marks.values() if m.kind == "key_image" and m.case_id == case_id and m.study_uid and m.series_uid),
        key=lambda m: m.mark_id,
    )
    return [
        {
            "study_uid": m.study_uid,
            "series_uid": m.series_uid,
            "sop_uid": m.sop_uid,
            "sop_class_uid": "",
            # PS3.3 C.17.2.1: a frame is only referenced for multi-frame instances; frame 1 = the whole image.
            "frame": m.frame if m.frame > 1 else None,
            "description": m.label,
        }
        for m in found
    ]


def key_images_to_draft(db: Any) -> Callable[[LiveRoom, list[Event]], Awaitable[None]]:
    """An ``on_events`` hook of :class:`Rooms`: the room's key-image marks of a case are its ``key_images`` field.

    The room is the authority for what was marked; the draft field mirrors it (replaced as a whole, with the
    field's version, retried on a concurrent save). A signed case is left alone: corrections go through amend.
    """
    from rcp.auth import audit
    from rcp.auth.models import User
    from rcp.minutes import store
    from rcp.minutes.versions import FieldConflict, thaw
    from rcp.scheduling.models import Case

    async def mirror(room: LiveRoom, case_id: int, actor: int) -> None:
        wanted = key_images_of(room.state.marks, case_id)
        saved = None
        for _attempt in range(3):
            try:
                async with db.session() as s:
                    current = (await store.load_draft(s, case_id)).get("key_images")
                    if thaw(current.value) == wanted:
                        return
                    saved = await store.save_field(
                        s, case_id, "key_images", wanted, base_version=current.version, editor_id=actor
                    )
                    case = await s.get(Case, case_id)
                    await audit.record(
                        s, event="patient_record", action="U", user=await s.get(User, actor),
                        patient_id=case.patient_id if case else None, meeting_id=room.meeting_id,
                        what=f"decision of case {case_id}: field key_images (room marks)", source="room",
                    )
                break
            except FieldConflict:
                continue
            except RcpError as exc:
                logger.info("room %s: key images of case %s not written (%s)", room.meeting_id, case_id, exc.code)
                return
        if saved is not None:
            await room.execute(
                c.NoteDecisionField(case_id=case_id, field="key_images", version=saved.version), actor=actor
            )

    async def hook(room: LiveRoom, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, MarkAdded) and event.mark.kind == "key_image" and event.mark.case_id:
                await mirror(room, event.mark.case_id, event.mark.author)
            elif isinstance(event, MarkRemoved):
                # The removed mark is gone from the state: bring every case of the agenda back in line.
                for item in room.state.agenda:
                    await mirror(room, item.case_id, int(event.actor or 0))

    return hook


def wire_decisions(state: Any) -> None:
    """Install the links on an app's state (its lifespan, once ``state.rooms`` and ``state.db`` exist)::

        wire_decisions(app.state)

    Idempotent: a second call (a test wrapping the app's lifespan) changes nothing.
    """
    if getattr(state, "room_attendees", None) is not None:
        return
    rooms: Rooms = state.rooms
    state.on_field_saved = [*getattr(state, "on_field_saved", ()), decision_broadcaster(rooms)]
    state.room_attendees = room_attendees(rooms, state.db)
    state.on_decision_signed = [*getattr(state, "on_decision_signed", ()), signature_broadcaster(rooms)]
    rooms.on_events.append(key_images_to_draft(state.db))
    rooms.on_events.append(attendance_recorder(state.db))
