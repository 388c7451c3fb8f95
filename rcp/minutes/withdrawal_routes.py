"""HTTP edge of a withdrawal: ``POST /api/cases/{case_id}/decision/versions/{number}/withdraw``.

A signed version entered in error is withdrawn by the coordinator of the meeting's board (or an administrator) or
by the physician who signed it, from their own sign-in (never a join-link guest session or a service token),
after re-authenticating as for a signature (password and second factor, or the open signing window:
``rcp.auth.reauth``). The rules run first (``rcp.minutes.withdrawals.withdraw``), the proof last, so that the
answer after a right proof is the act itself. The withdrawal, its EPR deliveries (MDM^T11, entered-in-error) and
what the app's other ``on_withdrawn`` hooks add (the imaging file's rejection note) are one transaction; the
act is audited naming the patient, a refusal by the rules as a security alert.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from rcp.auth import audit
from rcp.auth.models import Role
from rcp.auth.reauth import reauthenticate
from rcp.auth.throttle import Throttled
from rcp.http import current_user, path_int, read_json
from rcp.minutes import withdrawals
from rcp.minutes.withdrawals import NotAllowedToWithdraw, StoredWithdrawal
from rcp.openapi import ApiRoute
from rcp.scheduling import access
from rcp.scheduling.access import Action

__all__ = ["from_own_sign_in", "routes", "withdrawal_json"]

log = logging.getLogger(__name__)


class WithdrawRequest(BaseModel):
    #: The caller's password and second-factor code (rcp.auth.reauth); both may be left out while the session's
    #: five-minute signing window is open.
    password: str = Field(default="", max_length=200)
    code: str = Field(default="", max_length=40)
    reason: str = Field(min_length=1, max_length=withdrawals.MAX_REASON)
    #: The document was filed under another patient (the imaging file's rejection note then says so: DCM 113037).
    wrong_patient: bool = False


def withdrawal_json(w: StoredWithdrawal) -> dict[str, Any]:
    return {"id": w.id, "number": w.number, "withdrawn_by": {"user_id": w.withdrawn_by, "name": w.withdrawn_by_name},
            "withdrawn_at": w.withdrawn_at.isoformat(), "reason": w.reason, "wrong_patient": w.wrong_patient}


def from_own_sign_in(user: Any) -> bool:
    """The caller came through their own sign-in: not a join link's guest session, not a service token (the case
    page offers the withdrawal only then)."""
    return getattr(user, "via", "") == "session" and getattr(user, "meeting_scope", None) is None \
        and getattr(user, "role", "") != Role.guest


def _own_sign_in(user: Any) -> None:
    if not from_own_sign_in(user):
        raise NotAllowedToWithdraw("A version is withdrawn from a person's own sign-in: a session opened by a join "
                                   "link (guest) or a service token cannot withdraw it.")


async def withdraw(request: Request) -> Response:
    user = current_user(request)
    case_id = path_int(request, "case_id")
    number = path_int(request, "number")
    body = await read_json(request, WithdrawRequest)
    async with request.app.state.db.session() as s:
        case, meeting = await access.require_case(s, user, case_id, Action.sign)
        may_manage = await access.allows(s, user, Action.manage_meeting, meeting)

    async def confirm() -> None:
        await reauthenticate(request, user, body.password, code=body.code,
                             act=f"withdrawal of version {number} of case {case_id}",
                             patient_id=case.patient_id, meeting_id=case.meeting_id)

    try:
        _own_sign_in(user)
        async with request.app.state.db.session() as s:
            done = await withdrawals.withdraw(
                s, case_id=case_id, number=number, user_id=user.id, may_manage=may_manage, reason=body.reason,
                wrong_patient=body.wrong_patient, hooks=list(getattr(request.app.state, "on_withdrawn", ())),
                confirm=confirm)
            await audit.record(s, event="patient_record", action="U", request=request, patient_id=case.patient_id,
                               meeting_id=case.meeting_id,
                               what=f"decision of case {case_id}: version {number} withdrawn (entered in error)")
    except Throttled as exc:
        return JSONResponse(exc.as_json(), status_code=exc.status, headers={"Retry-After": str(exc.retry_after_s)})
    except NotAllowedToWithdraw as exc:
        async with request.app.state.db.session() as s:
            await audit.record(s, event="security_alert", action="E", outcome=4, request=request,
                               patient_id=case.patient_id, meeting_id=case.meeting_id,
                               what=f"withdrawal of version {number} of case {case_id} refused: {exc.code}")
        raise
    for name in ("epr_worker", "minutes_writeback"):
        worker = getattr(request.app.state, name, None)
        if worker is not None:
            worker.wake()
    return JSONResponse(withdrawal_json(done), status_code=201)


routes: list[BaseRoute] = [
    ApiRoute("/api/cases/{case_id:int}/decision/versions/{number:int}/withdraw", withdraw, method="POST",
             tag="minutes", body=WithdrawRequest, status=201,
             summary="Withdraw a signed version entered in error (its signer or the board's coordinator; "
                     "password and code again): HL7 MDM^T11 and FHIR entered-in-error, once each",
             media_type="application/json"),
]
