"""The coordinator's view of EPR delivery: per case and per meeting, each receiver's state, and "retry".

HTML fragments (``web/templates/epr/deliveries.html``) meant to be included in the meeting and case pages
(fetched by their scripts, or followed as plain links), plus the same data as JSON under ``/api``. Only the
board's coordinators (and admins) see them: the receivers' answers may quote patient data.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp import mail
from rcp.auth import audit
from rcp.epr.models import Delivery
from rcp.epr.outbox import DeliveryView, deliveries_for, retry
from rcp.http import current_user, path_int
from rcp.mail import Mail
from rcp.minutes.copies import COPY_MAIL, WITHDRAWAL_MAIL, CopyView, copies_for, send_again
from rcp.minutes.store import list_versions
from rcp.openapi import ApiRoute
from rcp.scheduling import access
from rcp.scheduling.access import Action
from rcp.scheduling.models import Board, Case, Meeting
from rcp.templating import render

__all__ = ["routes"]


def _json(views: list[DeliveryView]) -> list[dict[str, Any]]:
    out = []
    for view in views:
        data = asdict(view)
        for key in ("next_attempt_at", "delivered_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["needs_attention"] = view.needs_attention
        out.append(data)
    return out


async def _case_views(request: Request) -> tuple[Case, Meeting, str, list[DeliveryView], list[CopyView]]:
    """The case's EPR deliveries and its copies mailed to the GP and correspondents (``rcp.minutes.copies``);
    the read is audited by ``access.read_case``."""
    user = current_user(request)
    case_id = path_int(request, "case_id")
    async with request.app.state.db.session() as s:
        case = await access.read_case(s, user, case_id, what="EPR deliveries of case {case}", request=request,
                                      action=Action.manage_meeting)
        meeting = await access.require_meeting(s, user, case.meeting_id, Action.manage_meeting)
        timezone = await _timezone(s, meeting)
        views = await deliveries_for(s, case_id=case_id)
        copies = await copies_for(s, case_id)
    return case, meeting, timezone, views, copies


async def _timezone(session: Any, meeting: Meeting) -> str:
    """Times are shown in the board's zone, as on the meeting page."""
    board = await session.get(Board, meeting.board_id)
    return board.timezone if board is not None else "Europe/Paris"


async def _meeting_views(request: Request) -> tuple[Meeting, str, list[DeliveryView]]:
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    async with request.app.state.db.session() as s:
        meeting = await access.require_meeting(s, user, meeting_id, Action.manage_meeting)
        timezone = await _timezone(s, meeting)
        views = await deliveries_for(s, meeting_id=meeting_id)
        await audit.record(s, event="patient_record", action="R", request=request, meeting_id=meeting_id,
                           what=f"EPR deliveries of meeting {meeting_id}")
    return meeting, timezone, views


async def case_fragment(request: Request) -> Response:
    case, meeting, timezone, views, copies = await _case_views(request)
    assert case.id is not None
    async with request.app.state.db.session() as s:
        versions = [stored.version for stored in await list_versions(s, case.id)]
    return render(request, "epr/deliveries.html", {"deliveries": views, "scope": "case", "case": case,
                                                   "meeting": meeting, "timezone": timezone, "copies": copies,
                                                   "versions": versions})


async def meeting_fragment(request: Request) -> Response:
    meeting, timezone, views = await _meeting_views(request)
    return render(request, "epr/deliveries.html", {"deliveries": views, "scope": "meeting", "case": None,
                                                   "meeting": meeting, "timezone": timezone})


async def case_json(request: Request) -> Response:
    *_, views, copies = await _case_views(request)
    return JSONResponse({"deliveries": _json(views), "mail_copies": [_copy_json(c) for c in copies]})


def _copy_json(view: CopyView) -> dict[str, Any]:
    data = asdict(view)
    for key in ("queued_at", "sent_at", "next_attempt_at"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


async def meeting_json(request: Request) -> Response:
    *_, views = await _meeting_views(request)
    return JSONResponse({"deliveries": _json(views)})


async def retry_delivery(request: Request) -> Response:
    """POST: a delivery that needs attention goes back to the queue (coordinators of its board)."""
    user = current_user(request)
    delivery_id = path_int(request, "delivery_id")
    async with request.app.state.db.session() as s:
        row = await s.get(Delivery, delivery_id)
        meeting_id = row.meeting_id if row is not None else None
        if row is not None and meeting_id is None and row.case_id is not None:
            meeting_id = (await access.require_case(s, user, row.case_id, Action.manage_meeting))[1].id
        if row is None or meeting_id is None:
            raise access.NotVisible(f"No delivery {delivery_id} among your meetings.",
                                    alert=access.Alert(Action.manage_meeting, f"EPR delivery {delivery_id}"))
        await access.require_meeting(s, user, meeting_id, Action.manage_meeting)
        updated = await retry(s, delivery_id, actor=str(getattr(user, "username", "")))
        await audit.record(s, event="export", action="E", request=request, patient_id=row.patient_id,
                           meeting_id=meeting_id, what=f"EPR delivery {delivery_id} retried")
        case_id = updated.case_id
    worker = getattr(request.app.state, "epr_worker", None)
    if worker is not None:
        worker.wake()
    if request.url.path.startswith("/api/"):
        return JSONResponse({"id": delivery_id, "status": "pending"})
    # Back to the page that shows the delivery state (the fragment itself is not a page).
    target = f"/cases/{case_id}" if case_id is not None else f"/meetings/{meeting_id}"
    return RedirectResponse(target + "#epr-deliveries", status_code=303)


async def retry_copy(request: Request) -> Response:
    """POST: a copy mailed to the GP or a correspondent that failed for good is sent again (``rcp.minutes.copies``),
    by the coordinators of its board; anything else of the outbox is "not found"."""
    user = current_user(request)
    mail_id = path_int(request, "mail_id")
    async with request.app.state.db.session() as s:
        row = await s.get(Mail, mail_id)
        if row is None or row.case_id is None or row.kind not in (COPY_MAIL, WITHDRAWAL_MAIL):
            raise access.NotVisible(f"No mail copy {mail_id} among your meetings.",
                                    alert=access.Alert(Action.manage_meeting, f"mail copy {mail_id}"))
        case, meeting = await access.require_case(s, user, row.case_id, Action.manage_meeting)
        await send_again(s, mail_id)
        await audit.record(s, event="export", action="E", request=request, patient_id=case.patient_id,
                           meeting_id=meeting.id, what=f"mail copy {mail_id} of case {case.id} sent again")
        case_id = case.id
    mail.wake(request.app.state)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"id": mail_id, "status": "pending"})
    return RedirectResponse(f"/cases/{case_id}#epr-deliveries", status_code=303)


routes: list[BaseRoute] = [
    Route("/epr/cases/{case_id:int}/deliveries", case_fragment, methods=["GET"], name="epr_case_deliveries"),
    Route("/epr/meetings/{meeting_id:int}/deliveries", meeting_fragment, methods=["GET"],
          name="epr_meeting_deliveries"),
    Route("/epr/deliveries/{delivery_id:int}/retry", retry_delivery, methods=["POST"], name="epr_retry"),
    ApiRoute("/api/epr/cases/{case_id:int}/deliveries", case_json, method="GET", tag="epr",
             summary="Delivery state of each receiver, and of the copies mailed to the GP and correspondents, for a case's signed versions", media_type="application/json"),
    ApiRoute("/api/epr/meetings/{meeting_id:int}/deliveries", meeting_json, method="GET", tag="epr",
             summary="Delivery state of each receiver for a meeting", media_type="application/json"),
    ApiRoute("/api/epr/deliveries/{delivery_id:int}/retry", retry_delivery, method="POST", tag="epr",
             summary="Put a delivery that needs attention back in the queue", media_type="application/json"),
    Route("/epr/mail-copies/{mail_id:int}/retry", retry_copy, methods=["POST"], name="epr_copy_retry"),
    ApiRoute("/api/epr/mail-copies/{mail_id:int}/retry", retry_copy, method="POST", tag="epr",
             summary="Send again a copy mailed to the GP or a correspondent that could not be sent",
             media_type="application/json"),
]
