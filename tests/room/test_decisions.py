"""The room's side of the decision: ``decision.field`` events (no text), attendance per case, key images."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rcp.minutes.versions import DraftField
from rcp.room import commands as c
from rcp.room.bus import MemoryBus
from rcp.room.decisions import (
    decision_broadcaster,
    key_images_of,
    room_attendees,
    signature_broadcaster,
)
from rcp.room.events import (
    DecisionFieldSaved,
    DecisionSigned,
    Mark,
    Participant,
    event_from_dict,
    event_to_dict,
)
from rcp.room.live import Rooms
from rcp.room.log import MemoryEventLog
from rcp.room.state import AgendaItem, RoomState, apply, decide, replay
from tests.factories import MadeUser, credentials, make_meeting, proof
from tests.servers import ServerThread

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def joined(state: RoomState, user: int, *, role: str = "clinician") -> RoomState:
    p = Participant(user_id=user, display_name=f"U{user}", specialty="surgeon", role=role, connection=f"c{user}")
    return replay(state, decide(state, c.Join(p), actor=user, now=NOW))


def test_a_saved_field_is_an_event_even_from_someone_outside_the_room() -> None:
    state = RoomState(meeting_id=1, agenda=(AgendaItem(10),))
    events = decide(state, c.NoteDecisionField(case_id=10, field="proposal", version=3), actor=7, now=NOW)
    assert events == [
        DecisionFieldSaved(seq=1, at=NOW, actor=7, case_id=10, field="proposal", version=3, editor_id=7)
    ]
    after = apply(state, events[0])
    assert after.seq == 1 and after.participants == state.participants
    wire = event_to_dict(events[0])
    assert wire["event"] == "decision.field" and event_from_dict(wire) == events[0]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_signature_is_announced_in_the_room() -> None:
    log = MemoryEventLog()
    rooms = Rooms(log=log, bus=MemoryBus(), node_id="n1")
    await signature_broadcaster(rooms)(5, 10, 1, 4)
    [event] = await log.since(5, 0)
    assert isinstance(event, DecisionSigned)
    assert (event.case_id, event.number, event.signer_id, event.actor) == (10, 1, 4, 4)
    assert event_from_dict(event_to_dict(event)) == event
    await rooms.close()


def test_participants_cannot_forge_a_decision_event() -> None:
    for kind in ("decision.field", "decision.signed"):
        with pytest.raises(Exception, match="Unknown message type"):
            c.parse_command({"type": kind, "case_id": 1, "field": "proposal", "version": 1, "number": 1})


@pytest.mark.asyncio(loop_scope="session")
async def test_the_broadcaster_logs_the_event_without_the_text() -> None:
    log = MemoryEventLog()
    rooms = Rooms(log=log, bus=MemoryBus(), node_id="n1")
    hook = decision_broadcaster(rooms)
    secret = "Lobectomie supérieure droite"
    await hook(5, 10, "proposal", DraftField(value={"details": secret}, version=2, editor_id=4))
    [event] = await log.since(5, 0)
    assert isinstance(event, DecisionFieldSaved)
    assert (event.case_id, event.field, event.version, event.editor_id) == (10, "proposal", 2, 4)
    assert secret not in json.dumps(event_to_dict(event))
    assert rooms.get(5) is None  # opened for the broadcast only, closed after
    await rooms.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_attendance_is_who_was_there_while_the_case_was_discussed() -> None:
    """Case 10 is opened with 1 and 2 in the room; 2 leaves, 3 arrives; the chair moves to case 11; 4 arrives; the
    chair leaves; 5 enters the room where case 11 is still the current one, but nobody chairs it any more."""
    log = MemoryEventLog()
    rooms = Rooms(log=log, bus=MemoryBus(), node_id="n1")
    lookup = room_attendees(rooms)
    assert await lookup(3, 10) is None  # nobody ever joined: the invitations decide
    state = RoomState(meeting_id=3, agenda=(AgendaItem(10), AgendaItem(11), AgendaItem(12)))
    events = []
    minute = 0

    def step(command: c.Command, actor: int) -> None:
        nonlocal state, minute
        minute += 1
        more = decide(state, command, actor=actor, now=NOW + timedelta(minutes=minute))
        state = replay(state, more)
        events.extend(more)

    def join(user: int, role: str = "clinician") -> None:
        step(c.Join(Participant(user_id=user, display_name="x", role=role, connection=f"c{user}")), user)

    join(9, "coordinator")
    join(1)
    join(2)
    step(c.SetCase(10), 9)
    step(c.Leave("c2"), 2)
    join(3)
    step(c.SetCase(11), 9)
    join(4)
    step(c.Leave("c9"), 9)
    join(5)
    await log.append(3, events)
    assert await lookup(3, 10) == frozenset({9, 1, 2, 3})
    assert await lookup(3, 11) == frozenset({9, 1, 3, 4})
    assert await lookup(3, 12) == frozenset()  # never discussed: nobody was there for it
    await rooms.close()


def test_key_images_of_a_case_in_marking_order() -> None:
    marks = {
        4: Mark(mark_id=4, kind="key_image", sop_uid="1.2.3.2", author=1, case_id=10, study_uid="1.2",
                series_uid="1.2.3", label="lésion"),
        2: Mark(mark_id=2, kind="key_image", sop_uid="1.2.3.1", frame=3, author=1, case_id=10, study_uid="1.2",
                series_uid="1.2.3"),
        5: Mark(mark_id=5, kind="annotation", sop_uid="1.2.3.1", author=1, case_id=10, points=((1.0, 2.0),)),
        6: Mark(mark_id=6, kind="key_image", sop_uid="1.9", author=1, case_id=11, study_uid="1", series_uid="1.9"),
    }
    assert key_images_of(marks, 10) == [
        {"study_uid": "1.2", "series_uid": "1.2.3", "sop_uid": "1.2.3.1", "sop_class_uid": "", "frame": 3,
         "description": ""},
        {"study_uid": "1.2", "series_uid": "1.2.3", "sop_uid": "1.2.3.2", "sop_class_uid": "", "frame": None,
         "description": "lésion"},
    ]


def test_a_key_image_mark_carries_its_study_and_series() -> None:
    state = joined(RoomState(meeting_id=1, agenda=(AgendaItem(10, ("1.2",)),)), 9, role="coordinator")
    state = replay(state, decide(state, c.SetCase(10), actor=9, now=NOW))
    command = c.parse_command({"type": "mark.add", "kind": "key_image", "sop_uid": "1.2.3.4",
                               "study_uid": "1.2", "series_uid": "1.2.3"})
    [event] = decide(state, command, actor=9, now=NOW)
    mark = apply(state, event).marks[event.seq]
    assert (mark.study_uid, mark.series_uid, mark.case_id) == ("1.2", "1.2.3", 10)
    with pytest.raises(Exception, match="UID"):
        c.parse_command({"type": "mark.add", "kind": "key_image", "sop_uid": "1.2", "study_uid": "x"})


# -- through the real app: attendance is who is in the room when signing -----------------------------------------


def _decision_app(settings: Any) -> Any:
    """The real app; its lifespan wires the room to the decisions unless app.py already does (idempotent)."""
    from contextlib import asynccontextmanager

    from rcp.app import create_app
    from rcp.room.decisions import wire_decisions

    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            wire_decisions(a.state)
            yield state

    app.router.lifespan_context = lifespan
    return app


@pytest.fixture(scope="module")
def decision_node(settings: Any, db: Any) -> Iterator[ServerThread]:
    """The app on the shared test database, its room wired to the decisions."""
    node = ServerThread(_decision_app(settings)).start()
    try:
        yield node
    finally:
        node.close()


async def _login(url: str, user: MadeUser) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=30)
    response = await client.post("/api/session", json=credentials(user.username, user.password))
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


@pytest.mark.asyncio(loop_scope="session")
async def test_quorum_and_signature_count_who_was_there_for_the_case(decision_node: ServerThread,
                                                                     db: Any) -> None:
    from tests.room.client import RoomClient

    node = decision_node
    meeting = await make_meeting(db, invite=("surgeon", "medical_oncologist", "radiotherapist"), cases=1)
    meeting_id, case_id = meeting.id, meeting.cases[0].id
    people = {"secretary": meeting.coordinator, "surgeon": meeting.invitee("surgeon"),
              "oncologist": meeting.invitee("medical_oncologist"),
              "radiotherapist": meeting.invitee("radiotherapist")}
    names = tuple(people)
    http = {n: await _login(node.url, people[n]) for n in names}
    cookie = {n: f"rcp_session={http[n].cookies['rcp_session']}" for n in names}
    rooms = {n: await RoomClient.open(node.url, cookie[n], meeting_id) for n in names[:3]}
    surgeon = http["surgeon"]
    password = people["surgeon"].password
    try:
        await rooms["secretary"].send({"type": "case.set", "case_id": case_id})
        await rooms["surgeon"].wait_for(lambda r: any(e["case_id"] == case_id for e in r.of("case.changed")))
        me = (await surgeon.get("/api/session")).json()["id"]
        draft = {
            "proposal": {"type": "surgery", "details": "Lobectomie."}, "guideline": {"conforms": True},
            "case_status": "discussed",
            "patient_informed": True, "responsible_physician": {"name": "Dr Marc Lefèvre", "user_id": me},
        }
        for name, value in draft.items():
            saved = await surgeon.put(f"/api/cases/{case_id}/decision/fields/{name}",
                                      json={"value": value, "base_version": 0})
            assert saved.status_code == 200, saved.text
        # Every save reached the room as a decision.field event, without its text.
        await rooms["oncologist"].wait_for(lambda r: len(r.of("decision.field")) >= len(draft))
        assert "Lobectomie" not in str(rooms["oncologist"].of("decision.field"))

        # No radiotherapist while the case is discussed: no quorum, no signature.
        state = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()
        assert not state["quorum"]["met"] and state["quorum"]["missing"] == ["radiotherapist"]
        revision = state["draft"]["revision"]
        refused = await surgeon.post(f"/api/cases/{case_id}/decision/sign",
                                     json={**proof(people["surgeon"], password), "seen_revision": revision})
        assert refused.status_code == 409 and refused.json()["error"] == "quorum_not_met"

        # The radiotherapist comes in while the case is open, then leaves: they took part, the quorum stays met.
        rooms["radiotherapist"] = await RoomClient.open(node.url, cookie["radiotherapist"], meeting_id)
        await rooms.pop("radiotherapist").close()
        await rooms["surgeon"].wait_for(lambda r: bool(r.of("participant.left")))
        state = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()
        assert state["quorum"]["met"] and not state["missing"]
        assert state["signing"]["may_sign"] is True
        secretary = (await http["secretary"].get(f"/api/cases/{case_id}/decision")).json()
        assert secretary["signing"]["may_sign"] is False  # a board secretary never signs

        signed = await surgeon.post(f"/api/cases/{case_id}/decision/sign",
                                    json={**proof(people["surgeon"], password), "seen_revision": revision})
        assert signed.status_code == 201, signed.text
        [content] = (await surgeon.get(f"/api/cases/{case_id}/decision/versions")).json()
        attendees = {a["specialty"] for a in content["content"]["attendees"]}
        assert {"surgeon", "medical_oncologist", "radiotherapist"} <= attendees
        assert content["signer"] == {"user_id": me, "name": people["surgeon"].display_name}
        await rooms["oncologist"].wait_for(lambda r: bool(r.of("decision.signed")))
        assert rooms["oncologist"].of("decision.signed")[0]["number"] == 1
    finally:
        for room in rooms.values():
            await room.close()
        for client in http.values():
            await client.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_key_image_marks_are_the_cases_key_images(decision_node: ServerThread, db: Any) -> None:
    import asyncio

    from tests.room.client import RoomClient

    node = decision_node
    meeting = await make_meeting(db, cases=2)
    meeting_id, first_case = meeting.id, meeting.cases[0].id
    chair_http = await _login(node.url, meeting.coordinator)
    chair = await RoomClient.open(node.url, f"rcp_session={chair_http.cookies['rcp_session']}", meeting_id)
    try:
        await chair.wait_for(lambda r: r.snapshot is not None)
        agenda = chair.snapshot["agenda"] if chair.snapshot else []
        case_id = next(item["case_id"] for item in agenda if item["case_id"] != first_case)

        async def key_images(count: int) -> list[dict[str, Any]]:
            for _ in range(300):  # bounds a hang, not a speed check
                state = (await chair_http.get(f"/api/cases/{case_id}/decision")).json()
                value: list[dict[str, Any]] = state["draft"]["fields"]["key_images"]["value"]
                if len(value) == count:
                    return value
                await asyncio.sleep(0.1)
            pytest.fail(f"the draft never had {count} key image(s)")

        await chair.send({"type": "case.set", "case_id": case_id})
        await chair.send({"type": "mark.add", "kind": "key_image", "sop_uid": "1.2.3.4.5", "label": "nodule",
                          "study_uid": "1.2.3", "series_uid": "1.2.3.4"})
        [key] = await key_images(1)
        assert key == {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5", "sop_class_uid": "",
                       "frame": None, "description": "nodule"}
        await chair.wait_for(lambda r: any(e["field"] == "key_images" for e in r.of("decision.field")))
        [added] = chair.of("mark.added")
        await chair.send({"type": "mark.remove", "mark_id": added["mark"]["mark_id"]})
        assert await key_images(0) == []
        await chair.close()

        # Everybody has left: the case's attendance stays who was there while it was discussed (the chair only).
        chair_id = (await chair_http.get("/api/session")).json()["id"]
        state = (await chair_http.get(f"/api/cases/{case_id}/decision")).json()
        assert [a["user_id"] for a in state["attendees"]] == [chair_id] and not state["quorum"]["met"]
    finally:
        await chair.close()
        await chair_http.aclose()
