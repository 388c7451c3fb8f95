"""One agenda, three views (issue 14, item 7): the coordinator's page and API, the live room and the minutes
list a meeting's ready, deferred and withdrawn cases as rcp.scheduling.agenda says, and agree with each other."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from rcp.db import Database
from rcp.room.live import load_agenda
from rcp.scheduling.agenda import agenda_of
from rcp.scheduling.models import Case
from tests.factories import make_meeting

Login = Any


def _room_agenda(page: str) -> list[dict[str, Any]]:
    match = re.search(r'<script type="application/json" id="room-data">(.*?)</script>', page, re.DOTALL)
    assert match is not None, "no room data on the room page"
    data: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return list(data["agenda"])


async def test_coordinator_room_and_minutes_agree_on_ready_deferred_and_withdrawn(login: Login,
                                                                                   db: Database) -> None:
    made = await make_meeting(db, cases=3)
    ready, deferred, withdrawn = (c.id for c in made.cases)
    coordinator = await login(made.board.coordinator)
    moved = await coordinator.post(f"/api/cases/{deferred}/defer")
    assert moved.status_code == 201, moved.text
    next_meeting, next_case = moved.json()["meeting_id"], moved.json()["id"]
    assert (await coordinator.post(f"/api/cases/{withdrawn}/withdraw")).status_code == 200

    # The coordinator: the ready case on the agenda; both others struck through, the deferred one with where it went.
    detail = (await coordinator.get(f"/api/meetings/{made.id}")).json()
    assert detail["case_count"] == 1
    by_id = {c["id"]: c for c in detail["cases"]}
    assert [c["id"] for c in detail["cases"]] == [ready, deferred, withdrawn]  # agenda order kept
    assert (by_id[deferred]["deferred_to_id"], by_id[deferred]["deferred_to_meeting_id"]) == (next_case, next_meeting)
    assert by_id[withdrawn]["deferred_to_meeting_id"] is None
    page = (await coordinator.get(f"/meetings/{made.id}")).text
    agenda_table = page.split("data-off-agenda")[0]
    off = page.split("data-off-agenda")[1]
    assert f"/cases/{ready}" in agenda_table and f"/cases/{deferred}\"" not in agenda_table
    assert re.search(rf'data-off-case="{deferred}" data-state="deferred"><del>', off)
    assert f'data-deferred-to="{next_meeting}"' in off
    assert re.search(rf'data-off-case="{withdrawn}" data-state="withdrawn"><del>', off)
    one = (await coordinator.get(f"/api/cases/{deferred}")).json()  # the case alone says where it went, too
    assert (one["deferred_to_id"], one["deferred_to_meeting_id"]) == (next_case, next_meeting)
    assert one["deferred_to_starts_at"] == by_id[deferred]["deferred_to_starts_at"] is not None

    # The room: offers the ready case only; shows the deferred one in its place, struck through; not the withdrawn.
    room = await coordinator.get(f"/meetings/{made.id}/room")
    assert room.status_code == 200
    listed = [(c["id"], c["state"], c["number"]) for c in _room_agenda(room.text)]
    assert listed == [(ready, "on_agenda", 1), (deferred, "deferred", None)]  # numbered as the coordinator does
    assert f'data-case-id="{ready}"' in room.text and f'data-case-id="{deferred}"' not in room.text
    assert f'data-deferred-case="{deferred}"' in room.text
    assert [item.case_id for item in await load_agenda(db, made.id)] == [ready]  # what the chair can open

    # The minutes: the ready case's fiche, the deferred case listed with its next meeting, the withdrawn one absent.
    minutes = await coordinator.get(f"/meetings/{made.id}/minutes")
    assert minutes.status_code == 200
    fiches = re.findall(r'<article class="fiche" data-case-id="(\d+)"', minutes.text)
    assert fiches == [str(ready)]
    deferred_lines = re.findall(r"<li data-deferred>(.*?)</li>", minutes.text, re.DOTALL)
    deferred_patient = made.cases[1].patient.family_name.upper()
    assert len(deferred_lines) == 1 and deferred_patient in html.unescape(deferred_lines[0])
    assert made.cases[2].patient.family_name.upper() not in minutes.text.upper()


def test_agenda_of_orders_and_places_each_case() -> None:
    cases = [Case(id=3, meeting_id=1, patient_id=1, position=2, status="ready"),
             Case(id=1, meeting_id=1, patient_id=2, position=0, status="deferred", deferred_to_id=9),
             Case(id=2, meeting_id=1, patient_id=3, position=1, status="withdrawn"),
             Case(id=4, meeting_id=1, patient_id=4, position=2, status="discussed"),
             Case(id=5, meeting_id=2, patient_id=5, position=0, status="ready")]  # another meeting's: left out
    agenda = agenda_of(1, cases)
    assert [e.case_id for e in agenda.entries] == [1, 2, 3, 4]
    assert [e.case_id for e in agenda.on_agenda] == [3, 4]
    assert [(e.case_id, e.state) for e in agenda.off_agenda] == [(1, "deferred"), (2, "withdrawn")]
    assert [e.case_id for e in agenda.in_room] == [1, 3, 4] == [e.case_id for e in agenda.in_minutes]
    assert agenda.destination(1) is None  # its new case was not given
    assert [agenda.number(i) for i in (1, 2, 3, 4)] == [None, None, 1, 2]
