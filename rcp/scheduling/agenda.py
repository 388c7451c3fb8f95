"""Pure rules of a meeting's agenda: order, readiness, and where a deferred case goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rcp.errors import Conflict, Invalid

__all__ = [
    "CLOSED_CASE_STATUSES",
    "Readiness",
    "next_slot",
    "readiness",
    "reorder",
]

#: A case in one of these states is off the agenda: it cannot be edited or moved any more.
CLOSED_CASE_STATUSES = frozenset({"deferred", "withdrawn"})


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
