"""Who may see what: meetings by invitation or board, patients through the meetings that discuss them.

A clinician sees only the meetings they are invited to and the patients of those meetings; a coordinator (or a
service account) sees the meetings of the boards they run; an admin sees everything. Anything outside that is
reported as *not found*, never *forbidden*, so that ids do not reveal that a patient exists.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import Role
from rcp.errors import Forbidden, NotAuthenticated, NotFound
from rcp.scheduling.models import Board, BoardCoordinator, Case, Invitation, Meeting, Patient

__all__ = [
    "board_for_user",
    "case_for_user",
    "is_admin",
    "may_manage_board",
    "may_see_study",
    "meeting_for_user",
    "patient_for_user",
    "require_manager",
    "visible_board_ids",
    "visible_meeting_ids",
]


def _require(user: Any) -> int:
    if user is None or not getattr(user, "is_authenticated", False):
        raise NotAuthenticated()
    return int(user.id)


def is_admin(user: Any) -> bool:
    return getattr(user, "role", "") == Role.admin


def visible_board_ids(user: Any) -> Select[Any]:
    """Boards the user coordinates (all boards for an admin; none through a join link)."""
    user_id = _require(user)
    if getattr(user, "meeting_scope", None) is not None:
        return select(Board.id).where(Board.id == -1)
    if is_admin(user):
        return select(Board.id)
    return select(BoardCoordinator.board_id).where(BoardCoordinator.user_id == user_id)


def visible_meeting_ids(user: Any) -> Select[Any]:
    """Meetings the user is invited to, plus those of the boards they coordinate.

    A session opened by a join link sees its one meeting, whatever the user's other invitations.
    """
    user_id = _require(user)
    scope = getattr(user, "meeting_scope", None)
    if scope is not None:
        return select(Invitation.meeting_id).where(Invitation.user_id == user_id, Invitation.meeting_id == scope)
    if is_admin(user):
        return select(Meeting.id)
    invited = select(Invitation.meeting_id).where(Invitation.user_id == user_id)
    coordinated = select(Meeting.id).where(col(Meeting.board_id).in_(visible_board_ids(user)))
    return select(Meeting.id).where(
        or_(col(Meeting.id).in_(invited), col(Meeting.id).in_(coordinated))
    )


async def may_manage_board(session: AsyncSession, user: Any, board_id: int) -> bool:
    """Coordinators of the board (and admins) prepare its meetings."""
    user_id = _require(user)
    if is_admin(user):
        return True
    if user.role not in {Role.coordinator, Role.service}:
        return False
    row = await session.get(BoardCoordinator, (board_id, user_id))
    return row is not None


async def require_manager(session: AsyncSession, user: Any, board_id: int) -> None:
    if not await may_manage_board(session, user, board_id):
        raise Forbidden("Only the board's coordinators can change this meeting.")


async def board_for_user(session: AsyncSession, user: Any, board_id: int) -> Board:
    """A board is visible to its coordinators, to admins, and to anyone invited to one of its meetings."""
    _require(user)
    found = (
        await session.exec(
            select(Board).where(
                Board.id == board_id,
                or_(
                    col(Board.id).in_(visible_board_ids(user)),
                    col(Board.id).in_(select(Meeting.board_id).where(col(Meeting.id).in_(visible_meeting_ids(user)))),
                ),
            )
        )
    ).first()
    if found is None:
        raise NotFound(f"No board {board_id} among yours.")
    return found


async def meeting_for_user(session: AsyncSession, user: Any, meeting_id: int) -> Meeting:
    _require(user)
    found = (
        await session.exec(
            select(Meeting).where(Meeting.id == meeting_id, col(Meeting.id).in_(visible_meeting_ids(user)))
        )
    ).first()
    if found is None:
        raise NotFound(f"No meeting {meeting_id} among yours.")
    return found


async def case_for_user(session: AsyncSession, user: Any, case_id: int) -> Case:
    _require(user)
    found = (
        await session.exec(
            select(Case).where(Case.id == case_id, col(Case.meeting_id).in_(visible_meeting_ids(user)))
        )
    ).first()
    if found is None:
        raise NotFound(f"No case {case_id} among your meetings.")
    return found


async def patient_for_user(session: AsyncSession, user: Any, patient_id: int) -> Patient:
    """A patient is visible through any case of a visible meeting (or to the board coordinators who added it)."""
    _require(user)
    found = (
        await session.exec(
            select(Patient).where(
                Patient.id == patient_id,
                col(Patient.id).in_(select(Case.patient_id).where(col(Case.meeting_id).in_(visible_meeting_ids(user)))),
            )
        )
    ).first()
    if found is None and is_admin(user):
        found = await session.get(Patient, patient_id)
    if found is None:
        raise NotFound(f"No patient {patient_id} among your meetings.")
    return found


async def may_see_study(session: AsyncSession, user: Any, study_uid: str, *, patient_id: int | None = None) -> bool:
    """A study is visible when it is attached to a visible case, or belongs to a visible patient.

    ``patient_id`` is the service's patient the archive says the study belongs to (matched by identifiers);
    passing it lets a case's not-yet-attached studies be listed for attachment.
    """
    _require(user)
    cases = (await session.exec(select(Case).where(col(Case.meeting_id).in_(visible_meeting_ids(user))))).all()
    if any(study_uid in (c.study_uids or []) for c in cases):
        return True
    return patient_id is not None and any(c.patient_id == patient_id for c in cases)
