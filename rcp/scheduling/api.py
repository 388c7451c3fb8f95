"""JSON API of the scheduling domain: boards, meetings, agenda, cases, patients, invitations."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from rcp.db import Database
from rcp.errors import BadRequest
from rcp.http import current_user, json_out, path_int, read_json, revoke
from rcp.i18n import current_locale
from rcp.mail import mask_address, wake
from rcp.openapi import ApiRoute
from rcp.scheduling import access, schemas, service
from rcp.scheduling.models import Invitation

__all__ = ["routes"]


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def boards(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        found = await service.list_boards(s, user)
        places = await service.establishments_of(s, found)
        return json_out([service.board_out(b, places) for b in found])


async def create_board(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.BoardIn)
    async with _db(request).session() as s:
        board = await service.create_board(s, user, data)
        await s.flush()
        return json_out(service.board_out(board), status=201)


async def board(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        found = await access.require_board(s, user, path_int(request, "board_id"))
        return json_out(service.board_out(found, await service.establishments_of(s, [found])))


async def update_charter(request: Request) -> Response:
    user = current_user(request)
    board_id = path_int(request, "board_id")
    async with _db(request).session() as s:
        await access.require_board(s, user, board_id, access.Action.edit_charter)  # before judging the body
    data = await read_json(request, schemas.BoardCharterPatch)
    async with _db(request).session() as s:
        found = await service.update_charter(s, user, board_id, data, request=request)
        return json_out(service.board_out(found, await service.establishments_of(s, [found])))


async def meetings(request: Request) -> Response:
    user = current_user(request)
    when = request.query_params.get("when", "all")
    if when not in {"all", "upcoming", "past"}:
        raise BadRequest("when must be all, upcoming or past.")
    board_id = request.query_params.get("board_id")
    if board_id is not None and not board_id.isdigit():
        raise BadRequest("board_id must be a number.")
    async with _db(request).session() as s:
        rows = await service.list_meetings(s, user, when=when, board_id=int(board_id) if board_id else None)
        return json_out([service.meeting_out(m, b, n) for m, b, n in rows])


async def create_meeting(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.MeetingIn)
    async with _db(request).session() as s:
        meeting = await service.create_meeting(s, user, data)
        assert meeting.id is not None
        return json_out(await service.meeting_detail(s, user, meeting.id, request=request), status=201)


async def meeting(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        return json_out(await service.meeting_detail(s, user, path_int(request, "meeting_id"), request=request))


async def update_meeting(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.MeetingPatch)
    async with _db(request).session() as s:
        found = await service.update_meeting(s, user, path_int(request, "meeting_id"), data)
        await s.flush()
        assert found.id is not None
        response = json_out(await service.meeting_detail(s, user, found.id, request=request))
    if data.status is not None:
        await revoke(request, meeting_id=found.id)
    return response


async def add_case(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.CaseIn)
    async with _db(request).session() as s:
        try:
            case = await service.add_case(s, user, path_int(request, "meeting_id"), data, request=request)
        except service.LikelyDuplicates as exc:
            held = exc  # nothing written but the audit of the look-alikes found, which is kept (committed)
        else:
            return json_out((await service.cases_out(s, user, [case], request=request))[0], status=201)
    raise held


async def reorder(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.ReorderIn)
    async with _db(request).session() as s:
        cases = await service.reorder_agenda(s, user, path_int(request, "meeting_id"), data.case_ids)
        return json_out(await service.cases_out(s, user, cases, request=request))


async def case(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        found, _meeting = await access.require_case(s, user, path_int(request, "case_id"))
        # cases_out audits the read of each case's patient.
        return json_out((await service.cases_out(s, user, [found], request=request))[0])


async def update_case(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.CasePatch)
    async with _db(request).session() as s:
        found = await service.update_case(s, user, path_int(request, "case_id"), data, request=request)
        return json_out((await service.cases_out(s, user, [found], request=request))[0])


async def defer_case(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        moved = await service.defer_case(s, user, path_int(request, "case_id"), request=request)
        return json_out((await service.cases_out(s, user, [moved], request=request))[0], status=201)


async def withdraw_case(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        found = await service.withdraw_case(s, user, path_int(request, "case_id"), request=request)
        return json_out((await service.cases_out(s, user, [found], request=request))[0])


async def patients(request: Request) -> Response:
    """Find patients (``service.find_patients``). POST: names and identifiers travel in the body, never in the
    address, which ends in access logs, browser history and proxies."""
    user = current_user(request)
    data = await read_json(request, schemas.PatientSearchIn)
    async with _db(request).session() as s:
        found = await service.find_patients(s, user, query=data.q, identifier=data.identifier, system=data.system,
                                            assigner=data.assigner, request=request)
        idents = await service.identifiers_of(s, [p.id for p in found if p.id is not None])
        return json_out([service.patient_out(p, idents[p.id]) for p in found if p.id is not None])


async def duplicates(request: Request) -> Response:
    """Likely duplicates of a patient about to be created (``service.likely_duplicates``); POST for the same
    reason as :func:`patients`."""
    user = current_user(request)
    data = await read_json(request, schemas.DuplicateSearchIn)
    identifiers = [v.replace(" ", "") for v in data.identifiers if v.strip()]
    async with _db(request).session() as s:
        found = await service.likely_duplicates(
            s, user, family_name=data.family_name, given_names=data.given_names, birth_date=data.birth_date,
            sex=data.sex, identifiers=identifiers, request=request)
        idents = await service.identifiers_of(s, [p.id for p in found if p.id is not None])
        return json_out([service.patient_out(p, idents[p.id]) for p in found if p.id is not None])


async def create_patient(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.PatientIn)
    async with _db(request).session() as s:
        patient = await service.create_patient(s, user, data, request=request)
        assert patient.id is not None
        idents = await service.identifiers_of(s, [patient.id])
        return json_out(service.patient_out(patient, idents[patient.id]), status=201)


async def patient(request: Request) -> Response:
    user = current_user(request)
    patient_id = path_int(request, "patient_id")
    async with _db(request).session() as s:
        found = await access.read_patient(s, user, patient_id, request=request)
        idents = await service.identifiers_of(s, [patient_id])
        return json_out(service.patient_out(found, idents[patient_id]))


async def invitations(request: Request) -> Response:
    user = current_user(request)
    meeting_id = path_int(request, "meeting_id")
    async with _db(request).session() as s:
        await access.require_meeting(s, user, meeting_id, access.Action.view_meeting)
        rows = await service.invitations_of(s, meeting_id)
        return json_out(await service.invitations_out(s, rows))


async def _one_invitation(s: AsyncSession, inv: Invitation) -> schemas.InvitationOut:
    rows = [(i, u) for i, u in await service.invitations_of(s, inv.meeting_id) if i.id == inv.id]
    return (await service.invitations_out(s, rows))[0]


async def invite(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.InvitationIn)
    async with _db(request).session() as s:
        inv = await service.invite(s, user, path_int(request, "meeting_id"), data, locale=current_locale.get())
        out = await _one_invitation(s, inv)
    wake(request.app.state)
    return json_out(out, status=201)


async def invite_guest(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.GuestIn)
    async with _db(request).session() as s:
        inv = await service.invite_guest(s, user, path_int(request, "meeting_id"), data,
                                         locale=current_locale.get())
        out = await _one_invitation(s, inv)
    wake(request.app.state)
    return json_out(out, status=201)


async def send_link(request: Request) -> Response:
    user = current_user(request)
    invitation_id = path_int(request, "invitation_id")
    async with _db(request).session() as s:
        mail = await service.resend_link(s, user, invitation_id, locale=current_locale.get())
        out = schemas.LinkSent(invitation_id=invitation_id, link_sent_to=mask_address(mail.recipient),
                               link_status=mail.status)
    wake(request.app.state)
    return json_out(out, status=202)


async def update_invitation(request: Request) -> Response:
    user = current_user(request)
    data = await read_json(request, schemas.InvitationPatch)
    async with _db(request).session() as s:
        inv = await service.update_invitation(s, user, path_int(request, "invitation_id"), data)
        await s.flush()
        return json_out(await _one_invitation(s, inv))


async def remove_invitation(request: Request) -> Response:
    user = current_user(request)
    async with _db(request).session() as s:
        meeting_id = await service.remove_invitation(s, user, path_int(request, "invitation_id"))
    await revoke(request, meeting_id=meeting_id)
    return Response(status_code=204)


routes = [
    ApiRoute("/api/boards", boards, method="GET", summary="Boards the caller coordinates or meets in",
             tag="boards", response=schemas.BoardOut, many=True),
    ApiRoute("/api/boards", create_board, method="POST", summary="Create a board", tag="boards",
             body=schemas.BoardIn, response=schemas.BoardOut, status=201),
    ApiRoute("/api/boards/{board_id:int}", board, method="GET", summary="One board", tag="boards",
             response=schemas.BoardOut),
    ApiRoute("/api/boards/{board_id:int}", update_charter, method="PATCH",
             summary="Change the board's charter and registration: FRCP type, required specialties, minimum, "
                     "national RCP id, RCP de recours and paediatric flags, establishment (its coordinators)",
             tag="boards", body=schemas.BoardCharterPatch, response=schemas.BoardOut),
    ApiRoute("/api/meetings", meetings, method="GET", summary="Meetings visible to the caller", tag="meetings",
             response=schemas.MeetingOut, many=True,
             query={"when": "all, upcoming or past", "board_id": "only this board's meetings"}),
    ApiRoute("/api/meetings", create_meeting, method="POST", summary="Schedule a meeting", tag="meetings",
             body=schemas.MeetingIn, response=schemas.MeetingDetail, status=201),
    ApiRoute("/api/meetings/{meeting_id:int}", meeting, method="GET",
             summary="A meeting with its agenda, invitations and quorum preview", tag="meetings",
             response=schemas.MeetingDetail),
    ApiRoute("/api/meetings/{meeting_id:int}", update_meeting, method="PATCH",
             summary="Reschedule, rename, start, close or cancel a meeting", tag="meetings",
             body=schemas.MeetingPatch, response=schemas.MeetingDetail),
    ApiRoute("/api/meetings/{meeting_id:int}/cases", add_case, method="POST",
             summary="Add a case (existing or new patient) to the agenda. A new patient who looks like registered "
                     "ones is held back (409, their ids in duplicates) until use_patient or duplicates_checked", tag="cases", body=schemas.CaseIn,
             response=schemas.CaseOut, status=201),
    ApiRoute("/api/meetings/{meeting_id:int}/agenda", reorder, method="PUT", summary="Reorder the agenda",
             tag="cases", body=schemas.ReorderIn, response=schemas.CaseOut, many=True),
    ApiRoute("/api/meetings/{meeting_id:int}/invitations", invitations, method="GET",
             summary="Who is invited, with responses and attendance", tag="invitations",
             response=schemas.InvitationOut, many=True),
    ApiRoute("/api/meetings/{meeting_id:int}/invitations", invite, method="POST", summary="Invite someone",
             tag="invitations", body=schemas.InvitationIn, response=schemas.InvitationOut, status=201),
    ApiRoute("/api/meetings/{meeting_id:int}/guests", invite_guest, method="POST",
             summary="Invite an external physician without an account (a join link is mailed to them)",
             tag="invitations", body=schemas.GuestIn, response=schemas.InvitationOut, status=201),
    ApiRoute("/api/invitations/{invitation_id:int}/send", send_link, method="POST",
             summary="Mail the guest a fresh join link (the previous ones stop working)", tag="invitations",
             response=schemas.LinkSent, status=202),
    ApiRoute("/api/invitations/{invitation_id:int}", update_invitation, method="PATCH",
             summary="Answer an invitation, or change the specialty it counts for", tag="invitations",
             body=schemas.InvitationPatch, response=schemas.InvitationOut),
    ApiRoute("/api/invitations/{invitation_id:int}", remove_invitation, method="DELETE",
             summary="Withdraw an invitation", tag="invitations", status=204),
    ApiRoute("/api/cases/{case_id:int}", case, method="GET", summary="A case with its patient and readiness",
             tag="cases", response=schemas.CaseOut),
    ApiRoute("/api/cases/{case_id:int}", update_case, method="PATCH", summary="Edit a case", tag="cases",
             body=schemas.CasePatch, response=schemas.CaseOut),
    ApiRoute("/api/cases/{case_id:int}/defer", defer_case, method="POST",
             summary="Defer a case to the board's next meeting (returns the new case)", tag="cases",
             response=schemas.CaseOut, status=201),
    ApiRoute("/api/cases/{case_id:int}/withdraw", withdraw_case, method="POST", summary="Withdraw a case",
             tag="cases", response=schemas.CaseOut),
    ApiRoute("/api/patients/search", patients, method="POST",
             summary="Find patients among the caller's meetings; with an exact identifier (an INS, or an IPP with "
                     "its assigner), a registered patient outside them (coordinators; audited). A POST so that "
                     "names and identifiers never appear in an address",
             tag="patients", body=schemas.PatientSearchIn, response=schemas.PatientOut, many=True),
    ApiRoute("/api/patients/duplicates", duplicates, method="POST", tag="patients", body=schemas.DuplicateSearchIn,
             response=schemas.PatientOut, many=True,
             summary="Likely duplicates of a patient about to be created (coordinators; audited). A POST so that "
                     "the identity never appears in an address"),
    ApiRoute("/api/patients", create_patient, method="POST", summary="Register a patient", tag="patients",
             body=schemas.PatientIn, response=schemas.PatientOut, status=201),
    ApiRoute("/api/patients/{patient_id:int}", patient, method="GET", summary="A patient", tag="patients",
             response=schemas.PatientOut),
]
