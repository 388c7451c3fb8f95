"""Reading the audit trail: who accessed a given patient's data, for the hospital's data protection officer.

The question a patient (GDPR art. 15) or the DPO asks is "who opened my file, when, from where". Every read of
patient data records the patient's id (``rcp.auth.audit.record(patient_id=...)``), so the answer is one query over
``audit_events``, shown to administrators as a page (``/audit/patients/{id}``) and by ``rcp audit patient ID``.
Looking is itself recorded (DCM 110106 Export, naming the patient), so the trail also says who asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rcp.auth import audit
from rcp.auth.models import AuditEvent, User
from rcp.clock import as_utc
from rcp.http import current_user, path_int
from rcp.templating import render

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["OUTCOMES", "patient_accesses", "routes", "text_lines"]

#: EventOutcomeIndicator (PS3.15 A.5.3) in words.
OUTCOMES = {0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure"}
ACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute"}


async def patient_accesses(session: AsyncSession, patient_id: int, *, limit: int = 10_000) -> Sequence[AuditEvent]:
    """Every audit event naming ``patient_id``, oldest first (at most ``limit``, the newest ones)."""
    rows = (await session.exec(
        select(AuditEvent).where(AuditEvent.patient_id == patient_id).order_by(col(AuditEvent.id).desc())
        .limit(limit)
    )).all()
    return list(reversed(rows))


def meaning(event: AuditEvent) -> str:
    return next((e.meaning for e in audit.EVENTS.values() if e.code == event.event_code), event.event_code)


def text_lines(events: Sequence[AuditEvent]) -> list[str]:
    """One tab-separated line per event (UTC time, user, event, action, outcome, source, what), for the CLI."""
    lines = ["at (UTC)\tuser\tevent\taction\toutcome\tsource\twhat"]
    for e in events:
        lines.append("\t".join((
            as_utc(e.at).strftime("%Y-%m-%d %H:%M:%S"), e.username or "-", f"{e.event_code} {meaning(e)}",
            ACTIONS.get(e.action, e.action), OUTCOMES.get(e.outcome, str(e.outcome)), e.source or "-", e.what,
        )))
    return lines


async def patient_page(request: Request) -> Response:
    """Who accessed this patient: administrators only (the list itself is personal data of the staff)."""
    from rcp.scheduling import access

    access.require(current_user(request), access.Action.view_audit)
    patient_id = path_int(request, "patient_id")
    async with request.app.state.db.session() as s:
        events = await patient_accesses(s, patient_id)
        await audit.record(s, event="export", action="R", request=request, patient_id=patient_id,
                           what=f"accesses to patient {patient_id} ({len(events)} events)")
        # The person behind each user name, as every page writes it ("Dr Amélie ROUSSEAU").
        ids = {e.user_id for e in events if e.user_id is not None}
        people = {u.id: u.display_name for u in (await s.exec(select(User).where(col(User.id).in_(ids)))).all()}
    rows = [{"event": e, "meaning": meaning(e), "action": ACTIONS.get(e.action, e.action),
             "outcome": OUTCOMES.get(e.outcome, str(e.outcome)), "person": people.get(e.user_id, "")}
            for e in events]
    return render(request, "audit_patient.html", {
        "patient_id": patient_id, "rows": rows,
        "timezone": request.app.state.settings.default_timezone,
    })


routes: list[BaseRoute] = [
    Route("/audit/patients/{patient_id:int}", patient_page, methods=["GET"], name="audit_patient"),
]
