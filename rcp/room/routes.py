"""Routes of the live room: the room page, its WebSocket, and the attendance of a meeting (for the minutes).

Mounted by rcp/app.py (``*room_routes.routes``); the app's lifespan must put a :class:`rcp.room.live.Rooms` in
``app.state.rooms`` (see :func:`rcp.room.live.open_rooms`).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from rcp.openapi import ApiRoute
from rcp.room.log import meeting_attendance
from rcp.room.socket import room_socket

__all__ = ["proposal_choices", "routes"]


async def room_page(request: Request) -> Response:
    """The meeting room: participants, floor, agenda with the case panel, and the viewer driven by the room."""
    from rcp import i18n
    from rcp.http import current_user
    from rcp.scheduling import access
    from rcp.scheduling.agenda import meeting_agenda
    from rcp.scheduling.models import Board, Patient
    from rcp.scheduling.specialties import SPECIALTIES
    from rcp.templating import render

    user = current_user(request)
    meeting_id = int(request.path_params["meeting_id"])
    async with request.app.state.db.session() as s:
        await access.require_meeting(s, user, meeting_id, access.Action.view_patient)  # before reading the agenda
        # The room lists the agenda's cases and, not offered for discussion, the deferred ones (rcp.scheduling.agenda).
        whole = await meeting_agenda(s, meeting_id)
        listed = whole.in_room
        # The case panel shows each case's question and summary: patient data, read and audited in one call.
        meeting, _read = await access.read_meeting_cases(
            s, user, meeting_id, cases=[e.case for e in listed], request=request,
            what=f"case {{case}} in meeting room {meeting_id}"
        )
        board = await s.get(Board, meeting.board_id)
        # The identity banner beside the images (RNIV: birth and used names, given names, birth date, sex,
        # identity status): the patients of the cases read (and audited) just above, nobody else.
        patient_ids = {e.case.patient_id for e in listed}
        rows = (await s.exec(select(Patient).where(col(Patient.id).in_(patient_ids)))).all() if patient_ids else []
        by_id = {p.id: p for p in rows}
        patients = {e.case.id: by_id[e.case.patient_id] for e in listed if e.case.patient_id in by_id}
    zone = board.timezone if board is not None else "Europe/Paris"
    agenda: list[dict[str, Any]] = [
        {
            "id": entry.case.id,
            "position": entry.case.position,
            "number": whole.number(entry.case_id),
            "state": entry.state,
            "deferred_to": (i18n.format_moment(entry.deferred_to.starts_at, zone, "d MMMM y")
                            if entry.deferred_to else ""),
            "question": entry.case.question,
            "clinical_summary": entry.case.clinical_summary,
            "staging": entry.case.staging,
            "study_uids": list(entry.case.study_uids or []),
        }
        for entry in listed
    ]
    specialties = {s.key: i18n.gettext(s.label) for s in SPECIALTIES}
    return render(request, "room.html", {"meeting": meeting, "agenda": agenda, "specialties": specialties,
                                         "proposals": proposal_choices(),
                                         "patients": patients})


def proposal_choices() -> list[dict[str, str]]:
    """The decision form's proposal types in the fiche's order, labelled as the fiche labels them, in the reader's
    language (``web/templates/room_strings.html``)."""
    from rcp import i18n
    from rcp.minutes.render import PROPOSAL_LABELS

    return [{"key": key, "label": i18n.gettext(label)} for key, label in PROPOSAL_LABELS.items()]


async def attendance(request: Request) -> Response:
    """Join and leave times per participant, from the room's event log (coordinators of the board)."""
    from rcp.http import current_user
    from rcp.scheduling import access

    user = current_user(request)
    meeting_id = int(request.path_params["meeting_id"])
    async with request.app.state.db.session() as s:
        await access.require_meeting(s, user, meeting_id, access.Action.manage_meeting)
    people = await meeting_attendance(request.app.state.rooms.log, meeting_id)
    return JSONResponse(
        {
            "meeting_id": meeting_id,
            "participants": [
                {
                    "user_id": a.user_id,
                    "display_name": a.display_name,
                    "specialty": a.specialty,
                    "hospital": a.hospital,
                    "stays": [
                        {
                            "joined_at": s.joined_at.isoformat(),
                            "left_at": s.left_at.isoformat() if s.left_at else None,
                        }
                        for s in a.stays
                    ],
                }
                for a in people.values()
            ],
        }
    )


routes: list[BaseRoute] = [
    Route("/meetings/{meeting_id:int}/room", room_page, methods=["GET"], name="meeting_room"),
    ApiRoute("/api/meetings/{meeting_id:int}/attendance", attendance, method="GET", name="meeting_attendance",
             tag="room", summary="Join and leave times per participant, for the minutes",
             media_type="application/json"),
    WebSocketRoute("/ws/meetings/{meeting_id:int}", room_socket, name="meeting_room_socket"),
]
