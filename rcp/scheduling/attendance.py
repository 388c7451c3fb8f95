"""The attendance of a case, frozen when its discussion ends (issue 14, item 5).

A case's attendees are everyone connected to the meeting's room between the chair opening the case and the
discussion ending (the chair opening another case, closing it, or the last chair leaving; rcp.room.attendance).
When a discussion ends, the room records it here (rcp.room.record): one ``case_discussions`` row and one
``case_attendance`` row per person, with the specialty they counted for *then* (the invitation's, else their
account's), inside or outside the quorum ("hors quorum"), guest or not, and the part of the discussion they were
there for. The quorum shown while writing, the one a signature checks, who may sign and the attendees of the fiche
all come from this record (rcp.minutes.store.CaseContext.attendees), so signing the evening after or the next day,
in an empty room, sees the people who decided.

Rules of the record:

- **Append only.** Rows are added, never changed or removed. A case opened again later (the radiotherapist
  arrived after all) gets another discussion, and its record is the union of its discussions: nobody who was there
  the first time disappears. Each person appears once on the fiche, with the specialty and quorum role of their
  latest discussion of the case, from their first arrival to their last departure.
- **Idempotent.** A discussion is identified by the room event that opened it: recording it twice (two nodes, a
  retry after a crash) stores it once.
- **Quorum status.** Each discussion row keeps the JDV_StatutQuorum_CISIS code of the whole record once it was
  added (ORG-126 met, ORG-133 "quorum non atteint"); a case the chair closes while it reads ORG-133 and that is
  not signed is put back on the board's next meeting (rcp.room.record).

    >>> attending_specialty("", "radiologist", "clinician"), attending_specialty("", "", "coordinator")
    ('radiologist', 'secretary')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth import audit
from rcp.auth.models import User
from rcp.clock import as_utc, utcnow
from rcp.scheduling.models import Board, Case, CaseAttendance, CaseDiscussion, Invitation
from rcp.scheduling.quorum import Attendee, Quorum, evaluate_quorum
from rcp.scheduling.specialties import SPECIALTIES

__all__ = [
    "Attended",
    "Present",
    "attending_specialty",
    "case_record",
    "merge",
    "record_discussion",
    "record_quorum",
    "recorded_openings",
]

logger = logging.getLogger(__name__)
_SPECIALTY_KEYS = frozenset(s.key for s in SPECIALTIES)


@dataclass(frozen=True)
class Present:
    """What the room knows of one person connected during a discussion (rcp.room.attendance.Presence)."""

    user_id: int
    guest: bool
    joined_at: datetime
    left_at: datetime


@dataclass(frozen=True)
class Attended:
    """One person of a case's record, as the fiche lists them."""

    user_id: int
    name: str
    hospital: str
    #: The specialty key they counted for ("" when none was known: such a person is recorded, not listed).
    specialty: str
    quorum_member: bool
    guest: bool
    joined_at: datetime
    left_at: datetime

    def as_attendee(self) -> Attendee:
        return Attendee(user_id=self.user_id, specialty=self.specialty, counts=self.quorum_member)


def attending_specialty(invited: str, account: str, role: str) -> str:
    """The one specialty someone counts for (INCa: one each): the invitation's, else the account's; a coordinator
    with neither is the board secretary; "" when nothing known is left."""
    for key in (invited, account):
        if key in _SPECIALTY_KEYS:
            return key
    return "secretary" if role == "coordinator" else ""


def merge(rows: Iterable[Attended]) -> tuple[Attended, ...]:
    """Several discussions' rows (in discussion order) as one person each: first arrival, last departure, and
    the specialty, quorum role and guest flag of their latest discussion; in order of first arrival."""
    people: dict[int, Attended] = {}
    for row in rows:
        before = people.get(row.user_id)
        if before is None:
            people[row.user_id] = row
            continue
        people[row.user_id] = Attended(
            row.user_id, row.name, row.hospital, row.specialty, row.quorum_member, row.guest,
            min(before.joined_at, row.joined_at), max(before.left_at, row.left_at),
        )
    return tuple(sorted(people.values(), key=lambda a: a.joined_at))


async def case_record(session: AsyncSession, case_id: int) -> tuple[Attended, ...]:
    """The case's frozen attendance (every recorded discussion merged, :func:`merge`); empty when none ended."""
    rows = (await session.exec(
        select(CaseAttendance, User).join(User, col(User.id) == col(CaseAttendance.user_id))
        .where(CaseAttendance.case_id == case_id)
        .order_by(col(CaseAttendance.discussion_id), col(CaseAttendance.joined_at), col(CaseAttendance.id))
    )).all()
    return merge(
        Attended(row.user_id, user.display_name or user.username, user.hospital, row.specialty, row.quorum_member,
                 row.guest, as_utc(row.joined_at), as_utc(row.left_at))
        for row, user in rows
    )


async def recorded_openings(session: AsyncSession, meeting_id: int) -> frozenset[tuple[int, int]]:
    """(case id, opening room event) of every discussion of the meeting already recorded."""
    rows = (await session.exec(
        select(CaseDiscussion.case_id, CaseDiscussion.opened_seq).where(CaseDiscussion.meeting_id == meeting_id)
    )).all()
    return frozenset((case_id, seq) for case_id, seq in rows)


def record_quorum(record: Sequence[Attended], board: Board) -> Quorum:
    """The quorum of a recorded attendance (people without a known specialty never count)."""
    return evaluate_quorum((a.as_attendee() for a in record), board.required_specialties,
                           minimum=board.minimum_specialties)


async def record_discussion(
    session: AsyncSession,
    *,
    case_id: int,
    opened_seq: int,
    closed_seq: int,
    opened_at: datetime,
    closed_at: datetime,
    closed_by: str,
    present: Sequence[Present],
    at: datetime | None = None,
) -> CaseDiscussion | None:
    """Add one ended discussion of ``case_id`` to its record, in the caller's transaction; None when it is
    already recorded (another node, an earlier call). Audited (DCM 110110, create) with the quorum status."""
    at = at or utcnow()
    case = await session.get(Case, case_id)
    if case is None:
        logger.warning("attendance of case %s not recorded: no such case", case_id)
        return None
    known = (await session.exec(
        select(CaseDiscussion.id).where(CaseDiscussion.case_id == case_id, CaseDiscussion.opened_seq == opened_seq)
    )).first()
    if known is not None:
        return None
    ids = [p.user_id for p in present]
    users = {u.id: u for u in (await session.exec(select(User).where(col(User.id).in_(ids)))).all()}
    invitations = {inv.user_id: inv for inv in (await session.exec(
        select(Invitation).where(Invitation.meeting_id == case.meeting_id, col(Invitation.user_id).in_(ids))
    )).all()}
    discussion = CaseDiscussion(case_id=case_id, meeting_id=case.meeting_id, opened_seq=opened_seq,
                                closed_seq=closed_seq, opened_at=opened_at, closed_at=closed_at,
                                closed_by=closed_by, quorum_status="", recorded_at=at)
    session.add(discussion)
    # Another node recording it between our check and this insert fails here (IntegrityError on the unique
    # (case_id, opened_seq)): the caller's transaction rolls back, and the other node's record stands.
    await session.flush()
    assert discussion.id is not None
    for p in present:
        user = users.get(p.user_id)
        if user is None:
            continue  # an account deleted since: nothing to name
        invitation = invitations.get(p.user_id)
        session.add(CaseAttendance(
            discussion_id=discussion.id, case_id=case_id, user_id=p.user_id,
            specialty=attending_specialty(invitation.specialty if invitation else "", user.specialty, user.role),
            quorum_member=invitation.quorum_member if invitation else False,
            guest=p.guest or user.role == "guest", joined_at=p.joined_at, left_at=p.left_at,
        ))
    await session.flush()
    board = await _board_of(session, case)
    quorum = record_quorum(await case_record(session, case_id), board)
    discussion.quorum_status = quorum.status_code
    session.add(discussion)
    await audit.record(
        session, event="patient_record", action="C", patient_id=case.patient_id, meeting_id=case.meeting_id,
        source="room",
        what=f"attendance of case {case_id} recorded: discussion of room events {opened_seq}-{closed_seq} "
             f"({closed_by}), {len(present)} connected, quorum {quorum.status_code}",
    )
    return discussion


async def _board_of(session: AsyncSession, case: Case) -> Board:
    from rcp.scheduling.models import Meeting

    meeting = await session.get(Meeting, case.meeting_id)
    board = await session.get(Board, meeting.board_id) if meeting else None
    assert board is not None, "a case's meeting has a board"
    return board
