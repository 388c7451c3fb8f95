"""The audit trail: who touched which patient's data, when, from where, with what outcome.

Events are typed with the DICOM PS3.15 A.5 / IHE ATNA (ITI-20) EventID codes from the DCM coding scheme, so that
an audit repository can take them as they are; ``as_syslog`` renders RFC 5424 lines for export.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rcp.auth.models import AuditEvent
from rcp.clients import client_address
from rcp.clock import as_utc

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession
    from starlette.requests import HTTPConnection

__all__ = ["EVENTS", "AuditEventType", "as_syslog", "record", "source_of"]


@dataclass(frozen=True)
class AuditEventType:
    code: str
    meaning: str


#: DCM EventID codes (PS3.16 CID 400 "Audit Event ID").
EVENTS: dict[str, AuditEventType] = {
    "application_activity": AuditEventType("110100", "Application Activity"),
    "dicom_instances_accessed": AuditEventType("110103", "DICOM Instances Accessed"),
    "dicom_instances_transferred": AuditEventType("110104", "DICOM Instances Transferred"),
    "export": AuditEventType("110106", "Export"),
    "import": AuditEventType("110107", "Import"),
    "patient_record": AuditEventType("110110", "Patient Record"),
    "security_alert": AuditEventType("110113", "Security Alert"),
    "user_authentication": AuditEventType("110114", "User Authentication"),
    #: An account's role changed, or an account was created or deactivated (rcp.auth.accounts).
    "security_roles_changed": AuditEventType("110136", "Security Roles Changed"),
    #: An account's security attributes changed: password, second factor, e-mail, RPPS, names, specialty.
    "security_attributes_changed": AuditEventType("110137", "Security Attributes Changed"),
}
_MEANINGS = {e.code: e.meaning for e in EVENTS.values()}

#: RFC 5424 severities by EventOutcomeIndicator: success is notice (5), failures warning (4) or error (3).
_SEVERITY = {0: 5, 4: 4, 8: 3, 12: 3}


def source_of(conn: HTTPConnection | None) -> str:
    """The client's address (a trusted proxy's ``X-Forwarded-For``, else the peer: ``rcp.clients``)."""
    if conn is None:
        return ""
    return client_address(conn.scope)[:64]


async def record(
    session: AsyncSession,
    *,
    event: str,
    action: str = "R",
    outcome: int = 0,
    request: HTTPConnection | None = None,
    user: Any = None,
    patient_id: int | None = None,
    meeting_id: int | None = None,
    what: str = "",
    source: str | None = None,
) -> AuditEvent:
    """Add one audit event to ``session`` (it commits with the caller's unit of work).

    ``user`` defaults to ``request.user``; ``what`` names the object in the service's identifiers only.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; expected one of {', '.join(EVENTS)}")
    if action not in {"C", "R", "U", "D", "E"}:
        raise ValueError(f"audit action must be C, R, U, D or E (got {action!r})")
    if user is None and request is not None and "user" in request.scope:
        user = request.user
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    row = AuditEvent(
        event_code=EVENTS[event].code,
        action=action,
        outcome=outcome,
        user_id=user_id,
        username=getattr(user, "username", "") if user_id is not None else "",
        source=source if source is not None else source_of(request),
        patient_id=patient_id,
        meeting_id=meeting_id,
        what=what[:300],
    )
    session.add(row)
    return row


def _sd_escape(value: str) -> str:
    # RFC 5424 §6.3.3: inside PARAM-VALUE, '"', '\' and ']' are escaped with a backslash.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def as_syslog(events: Iterable[AuditEvent], *, hostname: str = "rcp", app_name: str = "rcp") -> Iterable[str]:
    """RFC 5424 lines, facility 13 (log audit), one structured-data element per event."""
    for e in events:
        severity = _SEVERITY.get(e.outcome, 3)
        pri = 13 * 8 + severity
        stamp = as_utc(e.at).isoformat().replace("+00:00", "Z")
        params = {
            "eventId": e.event_code,
            "action": e.action,
            "outcome": str(e.outcome),
            "user": e.username,
            "userId": "" if e.user_id is None else str(e.user_id),
            "source": e.source,
            "patient": "" if e.patient_id is None else str(e.patient_id),
            "meeting": "" if e.meeting_id is None else str(e.meeting_id),
            "what": e.what,
            # The trail's own id: a SIEM receiving a batch twice (at-least-once forwarding) can drop the copy.
            "ref": "" if e.id is None else str(e.id),
        }
        sd = " ".join(f'{k}="{_sd_escape(v)}"' for k, v in params.items())
        meaning = _MEANINGS.get(e.event_code, "")
        yield f"<{pri}>1 {stamp} {hostname} {app_name} - {e.event_code} [atna@32473 {sd}] {meaning}"
