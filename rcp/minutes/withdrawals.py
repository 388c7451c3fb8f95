"""Withdrawing a signed version entered in error: its own append-only record, and the hooks that carry it out.

A signed version is never changed or deleted (DESIGN section 6). When one was entered in error (the wrong case,
the wrong patient, a decision the board never took), it is *withdrawn*: a :class:`DecisionWithdrawal` row points
at it and says who withdrew it, when and why. The version stays as it was signed; what leaves the service says
that it no longer stands — HL7 MDM^T11 "document cancel notification" and the FHIR DocumentReference set to
``entered-in-error`` (``rcp.minutes.delivery.epr_on_withdrawn``), and the IHE IOCM rejection note in the imaging
file (subscribed to :data:`on_withdrawn` by the PACS side).

Who withdraws: the coordinators of the meeting's board (and administrators), or the physician who signed the
version; either re-authenticates first, as for a signature (``rcp.auth.reauth``). The route passes that check as
``confirm``; it runs after every rule here passed, so that the answer after a right proof is the act itself.

Hooks, in the withdrawal's own transaction (a hook that raises aborts it)::

    withdrawals.on_withdrawn.append(my_hook)   # async def my_hook(session, withdrawn: StoredWithdrawal) -> None

or per app, passed as ``hooks=`` (``app.state.on_withdrawn``), as :func:`rcp.minutes.store.sign` takes its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.auth.models import User
from rcp.clock import as_utc, utcnow
from rcp.errors import Conflict, Forbidden, Invalid, NotFound
from rcp.minutes import store
from rcp.minutes.models import DecisionWithdrawal
from rcp.minutes.store import Confirm, StoredVersion

__all__ = [
    "AlreadyWithdrawn",
    "NotAllowedToWithdraw",
    "StoredWithdrawal",
    "WithdrawnHook",
    "list_withdrawals",
    "may_withdraw",
    "on_withdrawn",
    "withdraw",
]

log = logging.getLogger(__name__)

#: Longest reason kept (it is shown on the case page and carried in HL7 EVN-4 / the audit trail's own words).
MAX_REASON = 2000


class AlreadyWithdrawn(Conflict):
    code = "already_withdrawn"


class NotAllowedToWithdraw(Forbidden):
    code = "not_allowed_to_withdraw"


@dataclass(frozen=True)
class StoredWithdrawal:
    """A withdrawal as stored, with the signed version it withdraws (unchanged)."""

    id: int
    case_id: int
    stored: StoredVersion
    withdrawn_by: int
    #: The account's display name ("Dr Amélie ROUSSEAU", "Mme Secrétaire"), as the case page shows it.
    withdrawn_by_name: str
    withdrawn_at: datetime
    reason: str
    #: The document was filed under another patient (IHE IOCM: DCM 113037 "Rejected for Patient Safety Reasons"
    #: rather than 113001 "Rejected for Quality Reasons").
    wrong_patient: bool

    @property
    def number(self) -> int:
        return self.stored.version.number


WithdrawnHook = Callable[[AsyncSession, StoredWithdrawal], Awaitable[None]]

#: Called inside the withdrawal's transaction once its row is written (and flushed): the EPR outbox adds its
#: MDM^T11 / entered-in-error rows, the imaging side its rejection note. A hook that raises aborts the withdrawal.
on_withdrawn: list[WithdrawnHook] = []


def _stored(row: DecisionWithdrawal, version: StoredVersion, by: User | None) -> StoredWithdrawal:
    assert row.id is not None
    return StoredWithdrawal(id=row.id, case_id=row.case_id, stored=version, withdrawn_by=row.withdrawn_by,
                            withdrawn_by_name=by.display_name if by is not None else "",
                            withdrawn_at=as_utc(row.withdrawn_at), reason=row.reason, wrong_patient=row.wrong_patient)


def may_withdraw(stored: StoredVersion, *, user_id: int, may_manage: bool) -> bool:
    """Who withdraws a signed version: the board's coordinator or an administrator (``may_manage``, the access
    policy's "manage meeting"), or the physician who signed it. One home for the rule: :func:`withdraw` enforces
    it, the case page asks it before offering the action."""
    return may_manage or stored.version.signed_by == user_id


async def list_withdrawals(session: AsyncSession, case_id: int) -> list[StoredWithdrawal]:
    """The case's withdrawals, by version number."""
    rows = (await session.exec(
        select(DecisionWithdrawal).where(DecisionWithdrawal.case_id == case_id).order_by(col(DecisionWithdrawal.id))
    )).all()
    if not rows:
        return []
    versions = {v.id: v for v in await store.list_versions(session, case_id)}
    users = {u.id: u for u in (await session.exec(
        select(User).where(col(User.id).in_({r.withdrawn_by for r in rows}))
    )).all()}
    found = [_stored(r, versions[r.version_id], users.get(r.withdrawn_by)) for r in rows if r.version_id in versions]
    return sorted(found, key=lambda w: w.number)


async def withdraw(session: AsyncSession, *, case_id: int, number: int, user_id: int, may_manage: bool,
                   reason: str, wrong_patient: bool = False, at: datetime | None = None,
                   hooks: Sequence[WithdrawnHook] = (), confirm: Confirm | None = None) -> StoredWithdrawal:
    """Withdraw signed version ``number`` of the case's decision, in the caller's transaction.

    ``may_manage``: the caller is a coordinator of the meeting's board or an administrator (the access policy's
    ``manage meeting``); otherwise only the physician who signed the version may withdraw it. ``confirm`` is the
    route's re-authentication, called after every rule passed.
    """
    at = at or utcnow()
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise Invalid(f"'reason' must be 1 to {MAX_REASON} characters: say why the version is withdrawn")
    listed = await store.list_versions(session, case_id)
    target = next((v for v in listed if v.version.number == number), None)
    if target is None:
        raise NotFound("No such signed version of this decision.")
    if not may_withdraw(target, user_id=user_id, may_manage=may_manage):
        raise NotAllowedToWithdraw("Only the physician who signed this version, or the board's coordinator, may "
                                   "withdraw it.")
    done = (await session.exec(select(DecisionWithdrawal).where(DecisionWithdrawal.version_id == target.id))).first()
    if done is not None:
        raise AlreadyWithdrawn(f"Version {number} was already withdrawn.")
    by = await session.get(User, user_id)
    if by is None or not by.active:
        raise NotAllowedToWithdraw("This account cannot withdraw a version: it is unknown or deactivated.")
    if confirm is not None:
        await confirm()
    row = DecisionWithdrawal(version_id=target.id, case_id=case_id, withdrawn_by=user_id, withdrawn_at=at,
                             reason=reason, wrong_patient=wrong_patient)
    session.add(row)
    try:
        # version_id is unique: of two withdrawals racing, the second fails here and its transaction rolls back.
        await session.flush()
    except IntegrityError:
        raise AlreadyWithdrawn(f"Version {number} was withdrawn at the same moment.") from None
    withdrawn = _stored(row, target, by)
    for hook in (*on_withdrawn, *hooks):
        await hook(session, withdrawn)
    await session.flush()
    log.info("case %s: decision version %s withdrawn by user %s", case_id, number, user_id)
    return withdrawn

