"""A meeting's agenda: the one definition of which cases it lists and how, plus its order and readiness rules.

:func:`meeting_agenda` is the only place that lists a meeting's cases; the coordinator's pages and the JSON API
(``rcp.scheduling.service``), the live room (``rcp.room``) and the minutes (``rcp.minutes.routes``) all take their
cases from it, so that they cannot disagree on what a deferred or withdrawn case is:

=================  ================================  ===================================  ============================
case               coordinator (page, API)           live room                            minutes
=================  ================================  ===================================  ============================
registered, ready  on the agenda: ordered, editable  offered for discussion               its fiche (draft)
discussed          on the agenda                     offered (the chair may come back)    its fiche (signed or draft)
deferred           off the agenda, struck through,   shown struck through, "deferred to   listed as deferred, with the
                   with the meeting it went to       <date>"; never offered (SetCase and  meeting it went to; no fiche
                   (its case there is the live one)  NextCase skip it; deferred while     (it is decided there)
                                                     open, it stays until the chair
                                                     moves on)
withdrawn          off the agenda, struck through    not shown: nothing to discuss        left out: the coordinator
                                                                                          took it off, the board did
                                                                                          not decide on it
=================  ================================  ===================================  ============================

Every view keeps the agenda order (position, then id) and numbers the cases on the agenda alike
(:meth:`Agenda.number`); deferred cases keep their place, unnumbered, so the room shows them where the board
expected them. A deferred case's destination is the case :func:`rcp.scheduling.service.defer_case`
created on the board's next meeting, with that meeting's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.clock import as_utc
from rcp.errors import Conflict, Invalid
from rcp.scheduling.models import Case, Meeting

__all__ = [
    "CLOSED_CASE_STATUSES",
    "Agenda",
    "AgendaEntry",
    "Destination",
    "Readiness",
    "agenda_of",
    "is_on_agenda",
    "meeting_agenda",
    "next_slot",
    "readiness",
    "reorder",
]

#: A case in one of these states is off the agenda: it cannot be edited or moved any more.
CLOSED_CASE_STATUSES = frozenset({"deferred", "withdrawn"})

State = Literal["on_agenda", "deferred", "withdrawn"]


def is_on_agenda(status: str) -> bool:
    """Whether a case in ``status`` is on its meeting's agenda (for views that hold cases already, e.g. as API
    models); every other view takes :attr:`Agenda.on_agenda` of :func:`meeting_agenda`."""
    return status not in CLOSED_CASE_STATUSES


@dataclass(frozen=True)
class Destination:
    """Where a deferred case went: its case on the board's next meeting, and when that meeting starts (UTC)."""

    case_id: int
    meeting_id: int
    starts_at: datetime


@dataclass(frozen=True)
class AgendaEntry:
    case: Case
    #: The deferred case's destination (None for other cases, or when its new case is gone).
    deferred_to: Destination | None = None

    @property
    def state(self) -> State:
        if is_on_agenda(self.case.status):
            return "on_agenda"
        return "deferred" if self.case.status == "deferred" else "withdrawn"

    @property
    def case_id(self) -> int:
        assert self.case.id is not None
        return self.case.id


@dataclass(frozen=True)
class Agenda:
    """Every case of one meeting in agenda order, and what each view shows of it (module docstring)."""

    meeting_id: int
    entries: tuple[AgendaEntry, ...]

    @property
    def on_agenda(self) -> tuple[AgendaEntry, ...]:
        """Cases still on the agenda: the coordinator orders and edits them, the room offers them for discussion,
        the minutes give each its fiche."""
        return tuple(e for e in self.entries if e.state == "on_agenda")

    @property
    def off_agenda(self) -> tuple[AgendaEntry, ...]:
        """Deferred and withdrawn cases, which the coordinator sees struck through under the agenda."""
        return tuple(e for e in self.entries if e.state != "on_agenda")

    @property
    def in_room(self) -> tuple[AgendaEntry, ...]:
        """What the room lists, in order: the cases on the agenda and, not offered, the deferred ones."""
        return tuple(e for e in self.entries if e.state != "withdrawn")

    @property
    def in_minutes(self) -> tuple[AgendaEntry, ...]:
        """What the minutes list, in order: a fiche for each case on the agenda, a line for each deferred one."""
        return self.in_room

    def number(self, case_id: int) -> int | None:
        """The case's number as every view shows it: its rank among the cases on the agenda (1, 2, ...); None
        for a deferred or withdrawn case, which no view numbers."""
        ranks = {e.case_id: rank for rank, e in enumerate(self.on_agenda, 1)}
        return ranks.get(case_id)

    def destination(self, case_id: int) -> Destination | None:
        return next((e.deferred_to for e in self.entries if e.case.id == case_id), None)


def agenda_of(meeting_id: int, cases: Sequence[Case], destinations: Mapping[int, Destination] | None = None
              ) -> Agenda:
    """The agenda of ``meeting_id`` from its cases (any order) and the destinations of the deferred ones (by the
    new case's id, as ``Case.deferred_to_id`` names it). Pure: :func:`meeting_agenda` loads the rows.
    """
    found = destinations or {}
    ordered = sorted((c for c in cases if c.meeting_id == meeting_id), key=lambda c: (c.position, c.id or 0))
    return Agenda(meeting_id=meeting_id, entries=tuple(
        AgendaEntry(case=c, deferred_to=found.get(c.deferred_to_id) if c.status == "deferred" and c.deferred_to_id
                    else None)
        for c in ordered))


async def meeting_agenda(session: AsyncSession, meeting_id: int) -> Agenda:
    """The agenda of a meeting, read in the caller's transaction. No access check and no audit here: the caller
    has checked the meeting (``rcp.scheduling.access``) and audits the cases it shows."""
    cases = (await session.exec(select(Case).where(Case.meeting_id == meeting_id)
                                .order_by(col(Case.position), col(Case.id)))).all()
    moved = [c.deferred_to_id for c in cases if c.status == "deferred" and c.deferred_to_id is not None]
    destinations: dict[int, Destination] = {}
    if moved:
        rows = await session.exec(select(Case.id, Case.meeting_id, Meeting.starts_at)
                                  .join(Meeting, col(Meeting.id) == col(Case.meeting_id))
                                  .where(col(Case.id).in_(moved)))
        for case_id, target_meeting, starts_at in rows.all():
            assert case_id is not None
            destinations[case_id] = Destination(case_id, target_meeting, as_utc(starts_at))
    return agenda_of(meeting_id, cases, destinations)


def reorder(current: Sequence[int], requested: Sequence[int]) -> list[int]:
    """Check that ``requested`` is a permutation of the agenda's active cases and return it.

    >>> reorder([3, 5, 8], [8, 3, 5])
    [8, 3, 5]
    """
    unknown = [case_id for case_id in requested if case_id not in current]
    if unknown:
        raise Invalid(
            f"The new order names cases that are not on this agenda: {', '.join(map(str, unknown))}.",
            fields={"case_ids": "unknown case ids: " + ", ".join(map(str, unknown))},
        )
    if len(set(requested)) != len(requested):
        raise Invalid("The new order names a case twice.", fields={"case_ids": "duplicate case ids"})
    missing = [case_id for case_id in current if case_id not in requested]
    if missing:
        raise Invalid(
            "The new order must name every case on the agenda; missing: " + ", ".join(map(str, missing)) + ".",
            fields={"case_ids": "missing case ids: " + ", ".join(map(str, missing))},
        )
    return list(requested)


def move(order: Sequence[int], case_id: int, offset: int) -> list[int]:
    """Move one case up (offset -1) or down (+1) in the agenda; at either end nothing changes."""
    if case_id not in order:
        raise Invalid(f"Case {case_id} is not on this agenda.", fields={"case_id": "not on this agenda"})
    items = list(order)
    index = items.index(case_id)
    target = max(0, min(len(items) - 1, index + offset))
    items.insert(target, items.pop(index))
    return items


@dataclass(frozen=True)
class Readiness:
    """The coordinator's checklist for one case before the meeting."""

    question: bool
    studies: bool
    referring: bool
    extra: tuple[tuple[str, bool], ...] = ()

    @property
    def ready(self) -> bool:
        return self.question and self.studies and self.referring and all(done for _, done in self.extra)

    @property
    def missing(self) -> tuple[str, ...]:
        """Keys of what is missing: ``question``, ``studies``, ``referring`` or an extra item's key."""
        items = (("question", self.question), ("studies", self.studies), ("referring", self.referring))
        return tuple(name for name, done in items + self.extra if not done)


def readiness(*, question: str, study_uids: Sequence[str], referring_physician: str,
              checklist: dict[str, bool] | None = None) -> Readiness:
    return Readiness(
        question=bool(question.strip()),
        studies=bool(study_uids),
        referring=bool(referring_physician.strip()),
        extra=tuple(sorted((checklist or {}).items())),
    )


def next_slot(*, weekday: int | None, at: str, timezone: str, after: datetime) -> datetime:
    """The board's next usual slot strictly after ``after``, as an aware UTC datetime.

    A board without a usual weekday meets a week later at the same local time.
    """
    zone = ZoneInfo(timezone)
    local_after = after.astimezone(zone)
    hour, minute = (int(part) for part in at.split(":"))
    day: date = local_after.date()
    for step in range(1, 15):
        candidate_day = day + timedelta(days=step)
        if weekday is None or candidate_day.weekday() == weekday:
            if weekday is None and step < 7:
                continue
            return datetime.combine(candidate_day, time(hour, minute), tzinfo=zone).astimezone(ZoneInfo("UTC"))
    raise Conflict("No next slot could be computed for this board.")  # unreachable with a valid weekday
