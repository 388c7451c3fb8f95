"""The factories make rows the app serves as its own: a coordinator runs the board, invitees see the meeting."""

from __future__ import annotations

from typing import Any

from rcp.db import Database
from tests.factories import make_case, make_meeting, make_patient

Login = Any


async def test_a_made_meeting_is_served_to_its_people_only(db: Database, login: Login) -> None:
    meeting = await make_meeting(db)
    other = await make_meeting(db, cases=1)
    coordinator = await login(meeting.coordinator)
    detail = (await coordinator.get(f"/api/meetings/{meeting.id}")).json()
    assert [c["id"] for c in detail["cases"]] == [c.id for c in meeting.cases]
    assert {i["user_id"] for i in detail["invitations"]} == {i.user.id for i in meeting.invitations}
    assert detail["quorum"]["met"], detail["quorum"]
    assert (await coordinator.get(f"/api/meetings/{other.id}")).status_code == 404  # another board's
    radiologist = await login(meeting.invitee("radiologist"))
    assert (await radiologist.get(f"/api/cases/{meeting.cases[0].id}")).status_code == 200
    assert (await radiologist.get(f"/api/cases/{other.cases[0].id}")).status_code == 404


async def test_made_rows_have_unique_names(db: Database) -> None:
    first, second = await make_meeting(db, cases=1), await make_meeting(db, cases=1)
    assert first.board.name != second.board.name and first.coordinator.username != second.coordinator.username
    assert first.cases[0].patient.ipp != second.cases[0].patient.ipp
    again = await make_case(db, first.id, await make_patient(db))
    assert again.position == 1
