"""The room freezes each case's attendance when its discussion ends (issue 14, item 5).

A discussion ends when the chair opens another case (``case.set`` / ``case.next``), closes the case
(``case.close``) or the last chair leaves (rcp.room.attendance.discussions). The node that decided that event
runs :func:`attendance_recorder` (a :class:`~rcp.room.live.Rooms` ``on_events`` hook): it reads the room's joins,
leaves and case changes from the log and records every ended discussion not recorded yet
(rcp.scheduling.attendance.record_discussion: idempotent, audited). The same catch-up runs before a decision is
read or signed (rcp.room.decisions.room_attendees), so a node that crashed between the event and its hook loses
nothing: the log holds the event, and the record follows from it.

A case the chair *closes* (``case.close``) while its record does not meet the quorum, and that is not signed, is
recorded as discussed without quorum (JDV_StatutQuorum_CISIS ORG-133 "quorum non atteint", on the discussion row)
and put back on the board's next meeting (rcp.scheduling.service.defer_case: a new case with the draft carried
over; the first case keeps its record, its draft and a link to the new one). Opening another case instead only
pauses the discussion: the chair may come back to it when the missing specialist arrives, and the record grows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from rcp.errors import RcpError
from rcp.room.attendance import (
    CLOSED_BY_CHAIR,
    PRESENCE_EVENTS,
    Discussion,
    attendance,
    discussions,
    present_in,
)
from rcp.room.events import CaseChanged, Event, ParticipantLeft
from rcp.room.log import EventLog, SqlEventLog

__all__ = ["attendance_recorder", "record_ended"]

logger = logging.getLogger(__name__)


async def _presence_events(log: EventLog, meeting_id: int) -> list[Event]:
    if isinstance(log, SqlEventLog):
        return await log.presence(meeting_id)
    return [e for e in await log.since(meeting_id, 0) if e.name in PRESENCE_EVENTS]


async def record_ended(db: Any, log: EventLog, meeting_id: int) -> list[int]:
    """Record every ended discussion of the meeting that is not recorded yet; returns the cases put back on the
    next meeting (closed by the chair without quorum, unsigned)."""
    from rcp.scheduling.attendance import Present, record_discussion, recorded_openings

    events = await _presence_events(log, meeting_id)
    ended = [d for d in discussions(events) if d.ended]
    if not ended:
        return []
    async with db.session() as session:
        known = await recorded_openings(session, meeting_id)
    people = attendance(events)
    relisted: list[int] = []
    for discussion in ended:
        if (discussion.case_id, discussion.opened_seq) in known:
            continue
        assert discussion.closed_at is not None and discussion.closed_seq is not None
        present = [Present(p.user_id, p.guest, p.joined_at, p.left_at) for p in present_in(discussion, people)]
        try:
            async with db.session() as session:
                recorded = await record_discussion(
                    session, case_id=discussion.case_id, opened_seq=discussion.opened_seq,
                    closed_seq=discussion.closed_seq, opened_at=discussion.opened_at,
                    closed_at=discussion.closed_at, closed_by=discussion.closed_by, present=present,
                )
        except IntegrityError:
            continue  # another node recorded it at the same moment
        if recorded is None or recorded.quorum_status != "ORG-133" or discussion.closed_by != CLOSED_BY_CHAIR:
            continue
        # Its own transaction: the record stands even if the case cannot be put back (signed meanwhile...).
        try:
            async with db.session() as session:
                if await _relist(session, discussion):
                    relisted.append(discussion.case_id)
        except RcpError as exc:
            logger.warning("room %s: case %s closed without quorum not put back on the next meeting (%s)",
                           meeting_id, discussion.case_id, exc.code)
    return relisted


async def _relist(session: Any, discussion: Discussion) -> bool:
    """Put a case its chair closed without quorum back on the board's next meeting, unless it is signed or off the
    agenda. The chair's right was checked by the room (``case.close`` is the policy's ``chair room``)."""
    from rcp.auth.models import User
    from rcp.auth.sessions import CurrentUser
    from rcp.minutes.models import DecisionVersion
    from rcp.scheduling import agenda, service
    from rcp.scheduling.models import Case, Meeting

    case = await session.get(Case, discussion.case_id)
    meeting = await session.get(Meeting, case.meeting_id) if case is not None else None
    signed = (await session.exec(
        select(func.count()).select_from(DecisionVersion).where(DecisionVersion.case_id == discussion.case_id)
    )).one()
    chair = await session.get(User, discussion.closer) if discussion.closer is not None else None
    if case is None or meeting is None or signed or case.status in agenda.CLOSED_CASE_STATUSES or chair is None:
        return False
    # The chair as the audit trail names a caller (its row then carries who put the case back).
    moved = await service.relist_case(session, CurrentUser.of(chair, via="room"), case, meeting,
                                      why="closed by the chair without quorum (ORG-133)")
    logger.info("case %s closed without quorum: put back on the next meeting as case %s", discussion.case_id,
                moved.id)
    return True


def _chaired(room: Any, user_id: int) -> bool:
    seat = room.state.participants.get(user_id)
    return seat is not None and bool(seat.chairs)


def attendance_recorder(db: Any) -> Callable[[Any, list[Event]], Awaitable[None]]:
    """An ``on_events`` hook of :class:`~rcp.room.live.Rooms`: after an event that may end a discussion (a case
    change, a leave), record what ended. A case closed by the chair is relisted when its quorum is not met."""

    async def hook(room: Any, events: list[Event]) -> None:
        # Only a case change or a chair leaving ends a discussion (a clinician's leave never does).
        ending = [e for e in events if isinstance(e, CaseChanged) or (
            isinstance(e, ParticipantLeft) and _chaired(room, e.user_id))]
        if not ending:
            return
        await record_ended(db, room.log, room.meeting_id)

    return hook
