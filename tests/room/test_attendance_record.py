"""Attendance frozen per case (issue 14, item 5): the rule (pure), its record in the database, and the room.

A case's attendees are everyone connected to the room between the chair opening the case and its discussion
ending; the record is written when it ends, and the quorum, the fiche and the signature use it, so a physician who
was there signs after everybody left, and one who was not is refused. A case the chair closes without quorum is
recorded ORG-133 and is on the board's next meeting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.db import Database
from rcp.room import commands as c
from rcp.room.attendance import (
    CLOSED_BY_CHAIR,
    CLOSED_BY_CHAIR_LEAVING,
    CLOSED_BY_OTHER_CASE,
    attendance,
    discussions,
    present_in,
)
from rcp.room.events import Event, Participant
from rcp.room.log import MemoryEventLog
from rcp.room.record import record_ended
from rcp.room.state import AgendaItem, RoomState, decide, replay
from rcp.scheduling.attendance import Attended, attending_specialty, case_record, merge
from rcp.scheduling.models import Case, CaseDiscussion
from tests.factories import make_meeting, proof
from tests.room.client import RoomClient
from tests.servers import ServerThread, until

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


class Script:
    """A room driven by commands through the pure reducer, one minute apart, keeping every event."""

    def __init__(self, *cases: int, meeting_id: int = 1) -> None:
        self.state = RoomState(meeting_id=meeting_id, agenda=tuple(AgendaItem(i) for i in cases))
        self.events: list[Event] = []
        self.minute = 0

    def at(self, minute: int) -> datetime:
        return NOW + timedelta(minutes=minute)

    def step(self, command: c.Command, actor: int) -> None:
        self.minute += 1
        more = decide(self.state, command, actor=actor, now=self.at(self.minute))
        self.state = replay(self.state, more)
        self.events.extend(more)

    def join(self, user: int, role: str = "clinician", *, guest: bool = False) -> None:
        self.step(c.Join(Participant(user_id=user, display_name=f"U{user}", role=role, connection=f"c{user}",
                                     guest=guest)), user)

    def leave(self, user: int) -> None:
        self.step(c.Leave(f"c{user}"), user)


# -- the rule, pure ------------------------------------------------------------------------------------------------


def test_a_discussion_ends_with_another_case_a_close_or_the_last_chair_leaving() -> None:
    room = Script(10, 11, 12)
    room.join(9, "coordinator")
    room.step(c.SetCase(10), 9)   # minute 2
    room.step(c.SetCase(11), 9)   # minute 3: 10 ends, 11 opens
    room.step(c.CloseCase(), 9)   # minute 4: 11 ends, no case
    room.step(c.SetCase(12), 9)   # minute 5
    room.leave(9)                 # minute 6: 12 ends
    found = [(d.case_id, d.opened_at, d.closed_at, d.closed_by, d.closer) for d in discussions(room.events)]
    assert found == [
        (10, room.at(2), room.at(3), CLOSED_BY_OTHER_CASE, 9),
        (11, room.at(3), room.at(4), CLOSED_BY_CHAIR, 9),
        (12, room.at(5), room.at(6), CLOSED_BY_CHAIR_LEAVING, 9),
    ]
    assert [(d.opened_seq, d.closed_seq) for d in discussions(room.events)] == [(3, 4), (4, 5), (6, 7)]


def test_closing_the_case_is_the_chairs_and_closing_no_case_changes_nothing() -> None:
    room = Script(10)
    room.join(9, "coordinator")
    room.join(1)
    assert decide(room.state, c.CloseCase(), actor=9, now=NOW) == []  # no case under discussion
    room.step(c.SetCase(10), 9)
    with pytest.raises(Exception, match="Only the coordinator closes"):
        decide(room.state, c.CloseCase(), actor=1, now=NOW)
    assert c.parse_command({"type": "case.close"}) == c.CloseCase()


def test_who_is_recorded_for_a_discussion_and_for_which_part_of_it() -> None:
    """1 is there from the start, 2 leaves in the middle, 3 (a guest) comes in during the discussion, 4 only
    comes after it ended: the record is 9, 1, 2 and 3, each for the part of the discussion they were there."""
    room = Script(10, 11)
    room.join(9, "coordinator")      # 1
    room.join(1)                     # 2
    room.join(2)                     # 3
    room.step(c.SetCase(10), 9)      # 4: opens
    room.leave(2)                    # 5
    room.join(3, guest=True)         # 6
    room.step(c.CloseCase(), 9)      # 7: ends
    room.join(4)                     # 8
    [discussion] = discussions(room.events)
    present = {p.user_id: p for p in present_in(discussion, attendance(room.events))}
    assert set(present) == {9, 1, 2, 3}
    assert (present[1].joined_at, present[1].left_at) == (room.at(4), room.at(7))
    assert (present[2].joined_at, present[2].left_at) == (room.at(4), room.at(5))
    assert (present[3].joined_at, present[3].guest) == (room.at(6), True)
    assert not present[1].guest


def test_the_specialty_counted_is_the_invitations_then_the_accounts() -> None:
    assert attending_specialty("radiotherapist", "surgeon", "clinician") == "radiotherapist"
    assert attending_specialty("", "surgeon", "clinician") == "surgeon"
    assert attending_specialty("", "", "coordinator") == "secretary"
    assert attending_specialty("", "astrologer", "clinician") == ""


def test_a_reopened_case_adds_to_its_record() -> None:
    """Two discussions of one case: nobody of the first disappears; each person once, from first arrival to last
    departure, with the specialty and quorum role of their latest discussion."""
    first = [Attended(1, "A", "", "surgeon", True, False, NOW, NOW + timedelta(minutes=5)),
             Attended(2, "B", "", "radiologist", True, False, NOW, NOW + timedelta(minutes=5))]
    later = NOW + timedelta(minutes=30)
    second = [Attended(1, "A", "", "surgeon", True, False, later, later + timedelta(minutes=5)),
              Attended(3, "C", "", "radiotherapist", False, True, later, later + timedelta(minutes=5))]
    merged = {a.user_id: a for a in merge([*first, *second])}
    assert list(merged) == [1, 2, 3]
    assert (merged[1].joined_at, merged[1].left_at) == (NOW, later + timedelta(minutes=5))
    assert merged[3].guest and not merged[3].quorum_member


# -- the record in the database ------------------------------------------------------------------------------------


async def test_the_record_is_written_once_and_grows_when_the_case_is_reopened(db: Database) -> None:
    meeting = await make_meeting(db, cases=2, invite=("surgeon", "medical_oncologist", "radiotherapist"))
    first, second = (case.id for case in meeting.cases)
    chair = meeting.coordinator.id
    surgeon, oncologist, radiotherapist = (meeting.invitee(s).id for s in
                                           ("surgeon", "medical_oncologist", "radiotherapist"))
    log = MemoryEventLog()
    room = Script(first, second, meeting_id=meeting.id)
    room.join(chair, "coordinator")
    room.join(surgeon)
    room.step(c.SetCase(first), chair)
    room.step(c.SetCase(second), chair)  # the first case's discussion ends: surgeon and chair only
    room.join(oncologist)
    room.join(radiotherapist)
    await log.append(meeting.id, room.events)
    assert await record_ended(db, log, meeting.id) == []
    assert await record_ended(db, log, meeting.id) == []  # recorded once
    async with db.session() as s:
        record = await case_record(s, first)
        assert {a.user_id for a in record} == {chair, surgeon}
        assert {a.user_id: a.specialty for a in record}[surgeon] == "surgeon"
        assert {a.user_id: a.quorum_member for a in record}[chair] is False  # the secretary is "hors quorum"
        [status] = (await s.exec(select(CaseDiscussion.quorum_status).where(CaseDiscussion.case_id == first))).all()
        assert status == "ORG-133"

    mark = len(room.events)
    room.step(c.SetCase(first), chair)  # back to the first case, the others are here now
    room.step(c.SetCase(second), chair)
    await log.append(meeting.id, room.events[mark:])
    await record_ended(db, log, meeting.id)
    async with db.session() as s:
        record = await case_record(s, first)
        assert {a.user_id for a in record} == {chair, surgeon, oncologist, radiotherapist}
        statuses = (await s.exec(select(CaseDiscussion.quorum_status).where(CaseDiscussion.case_id == first)
                                 .order_by(col(CaseDiscussion.opened_seq)))).all()
        assert statuses == ["ORG-133", "ORG-126"]
        audited = (await s.exec(select(AuditEvent.what).where(
            col(AuditEvent.what).like(f"attendance of case {first} recorded:%")))).all()
        assert len(audited) == 2 and "quorum ORG-126" in audited[1]


# -- through the real room ------------------------------------------------------------------------------------------


async def _people(login: Callable[..., Any], users: dict[str, Any]) -> dict[str, Any]:
    return {name: await login(user) for name, user in users.items()}


def _cookie(client: Any) -> str:
    return f"rcp_session={client.http.cookies['rcp_session']}"


def draft_of(responsible: int) -> dict[str, Any]:
    """A complete decision (signable once the quorum is met)."""
    return {"proposal": {"type": "surgery", "details": "Lobectomie."}, "guideline": {"conforms": True},
            "case_status": "discussed", "patient_informed": True, "responsible_physician": {"name": "Dr Responsable", "user_id": responsible}}


async def test_a_physician_who_was_there_signs_after_everybody_left(live_server: ServerThread, db: Database,
                                                                  login: Callable[..., Any]) -> None:
    meeting = await make_meeting(db, cases=2, invite=("surgeon", "medical_oncologist", "radiotherapist",
                                                      "radiologist"))
    case_id = meeting.cases[0].id
    users = {"chair": meeting.coordinator, "surgeon": meeting.invitee("surgeon"),
             "oncologist": meeting.invitee("medical_oncologist"),
             "radiotherapist": meeting.invitee("radiotherapist"), "radiologist": meeting.invitee("radiologist")}
    http = await _people(login, users)
    assert (await http["chair"].patch(f"/api/meetings/{meeting.id}", json={"status": "live"})).status_code == 200
    rooms = {n: await RoomClient.open(live_server.url, _cookie(http[n]), meeting.id)
             for n in ("chair", "surgeon", "oncologist", "radiotherapist")}
    try:
        await rooms["chair"].send({"type": "case.set", "case_id": case_id})
        await rooms["surgeon"].wait_for(lambda r: bool(r.of("case.changed")))
        # While the case is discussed, the quorum shown counts who is connected to it.
        live = (await http["surgeon"].get(f"/api/cases/{case_id}/decision")).json()
        assert live["quorum"]["met"]
        # The radiotherapist leaves during the discussion: they were there, and stay on the record.
        await rooms.pop("radiotherapist").close()
        await rooms["chair"].wait_for(lambda r: bool(r.of("participant.left")))
        await rooms["chair"].send({"type": "case.close"})
        await rooms["surgeon"].wait_for(lambda r: any(e["case_id"] is None for e in r.of("case.changed")))
        # The radiologist comes in once the case is closed: not there for it.
        rooms["radiologist"] = await RoomClient.open(live_server.url, _cookie(http["radiologist"]), meeting.id)

        async def recorded() -> set[int]:
            async with db.session() as s:
                return {a.user_id for a in await case_record(s, case_id)}

        expected = {users[n].id for n in ("chair", "surgeon", "oncologist", "radiotherapist")}
        assert await until(lambda: _equal(recorded, expected), "the case's attendance recorded") is True
    finally:
        for room in rooms.values():
            await room.close()
    # Everybody left; the meeting ends. The radiotherapist's invitation is changed afterwards (now "outside the
    # quorum"): the record keeps what they counted for when the case was discussed.
    assert (await http["chair"].patch(f"/api/meetings/{meeting.id}", json={"status": "closed"})).status_code == 200
    changed = await http["chair"].patch(f"/api/invitations/{meeting.invitation_of(users['radiotherapist']).id}",
                                        json={"quorum_member": False})
    assert changed.status_code == 200, changed.text

    surgeon = http["surgeon"]
    for name, value in draft_of(users["surgeon"].id).items():
        saved = await surgeon.put(f"/api/cases/{case_id}/decision/fields/{name}",
                                  json={"value": value, "base_version": 0})
        assert saved.status_code == 200, saved.text
    state = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()
    assert state["quorum"]["met"] and state["quorum"]["status"]["code"] == "ORG-126"
    assert {a["user_id"] for a in state["attendees"]} == expected
    assert state["signing"]["may_sign"] is True
    revision = state["draft"]["revision"]

    # The meeting's minutes list the same people for the case, and nobody for the case never discussed (the
    # radiologist, who only joined the meeting afterwards, is on neither).
    minutes = (await http["chair"].get(f"/meetings/{meeting.id}/minutes")).text
    listed_ids = [int(found) for found in re.findall(r'data-attendee="(\d+)"', minutes)]
    assert sorted(listed_ids) == sorted(expected)

    refused = await http["radiologist"].post(f"/api/cases/{case_id}/decision/sign",
                                             json={**proof(users["radiologist"]), "seen_revision": revision})
    assert refused.status_code == 403 and refused.json()["error"] == "not_allowed_to_sign"

    signed = await surgeon.post(f"/api/cases/{case_id}/decision/sign",
                                json={**proof(users["surgeon"]), "seen_revision": revision})
    assert signed.status_code == 201, signed.text
    [version] = (await surgeon.get(f"/api/cases/{case_id}/decision/versions")).json()
    listed = {a["user_id"]: a for a in version["content"]["attendees"]}
    assert set(listed) == expected
    assert listed[users["radiotherapist"].id]["specialty"] == "radiotherapist"
    assert listed[users["radiotherapist"].id]["quorum_member"] is True  # as recorded, not as changed since
    assert listed[users["chair"].id]["quorum_member"] is False
    # When each was there, as recorded: the radiotherapist left before the case was closed.
    left = {u: datetime.fromisoformat(a["present_until"]) for u, a in listed.items()}
    assert left[users["radiotherapist"].id] < left[users["surgeon"].id] == left[users["chair"].id]


def test_recorded_times_travel_with_the_fiche_and_are_checked() -> None:
    from rcp.minutes.fiche import AttendeeRecord

    record = AttendeeRecord(1, "Dr A", "surgeon", present_from=NOW, present_until=NOW + timedelta(minutes=9))
    assert AttendeeRecord.parse(record.as_json(), "attendees[0]") == record
    assert "present_from" not in AttendeeRecord(1, "Dr A", "surgeon").as_json()  # older fiches keep their form
    with pytest.raises(Exception, match="ISO 8601") as raised:
        AttendeeRecord.parse({**record.as_json(), "present_from": "14h02"}, "attendees[0]")
    assert getattr(raised.value, "path", "") == "attendees[0].present_from"  # the field is named


async def _equal(read: Callable[[], Any], expected: set[int]) -> bool:
    return bool(await read() == expected)


async def test_a_case_closed_without_quorum_is_recorded_so_and_put_on_the_next_meeting(
        live_server: ServerThread, db: Database, login: Callable[..., Any]) -> None:
    meeting = await make_meeting(db, cases=1, invite=("surgeon", "medical_oncologist", "radiotherapist"))
    case_id = meeting.cases[0].id
    chair, surgeon = await login(meeting.coordinator), await login(meeting.invitee("surgeon"))
    saved = await surgeon.put(f"/api/cases/{case_id}/decision/fields/proposal",
                              json={"value": {"type": "surgery", "details": "À rediscuter."}, "base_version": 0})
    assert saved.status_code == 200, saved.text
    rooms = [await RoomClient.open(live_server.url, _cookie(who), meeting.id) for who in (chair, surgeon)]
    try:
        await rooms[0].send({"type": "case.set", "case_id": case_id})
        await rooms[1].wait_for(lambda r: bool(r.of("case.changed")))
        await rooms[0].send({"type": "case.close"})

        async def deferred() -> Case | None:
            async with db.session() as s:
                case = await s.get(Case, case_id)
                return case if case is not None and case.deferred_to_id else None

        old = await until(deferred, "the case put back on the next meeting")
    finally:
        for room in rooms:
            await room.close()
    assert old.status == "deferred"
    decision = (await chair.get(f"/api/cases/{case_id}/decision")).json()
    assert decision["quorum"]["status"]["code"] == "ORG-133"
    assert {a["user_id"] for a in decision["attendees"]} == {meeting.coordinator.id, meeting.invitee("surgeon").id}
    async with db.session() as s:
        [closed] = (await s.exec(select(CaseDiscussion).where(CaseDiscussion.case_id == case_id))).all()
        assert (closed.closed_by, closed.quorum_status) == ("case.closed", "ORG-133")
        new = await s.get(Case, old.deferred_to_id)
        assert new is not None and new.meeting_id != meeting.id and new.patient_id == old.patient_id
        [who] = (await s.exec(select(AuditEvent.user_id).where(
            AuditEvent.what == f"case {case_id} deferred to case {new.id} (meeting {new.meeting_id}): closed by the "
                               "chair without quorum (ORG-133)"))).all()
        assert who == meeting.coordinator.id
    agenda = (await chair.get(f"/api/meetings/{new.meeting_id}")).json()
    assert new.id in [c["id"] for c in agenda["cases"]]
    # The new case keeps what was written (the history stays on the first case).
    carried = (await surgeon.get(f"/api/cases/{new.id}/decision")).json()
    assert carried["draft"]["fields"]["proposal"]["value"]["details"] == "À rediscuter."
