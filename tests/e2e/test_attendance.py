"""Issue 14, item 5, end to end in headless Chromium: a fiche signed after every participant has left, with the
attendance recorded when the case was discussed, shown on the fiche page.

The chair (in Chromium) opens the case from the room's agenda; the surgeon (in Chromium), the oncologist and the
radiotherapist (WebSocket participants) are there; the radiotherapist leaves during the discussion; the chair
closes the case with the room's button; the radiologist only comes in afterwards. Everybody leaves, the meeting is
closed, and the surgeon signs. The fiche page lists the four who were there, with when, and not the radiologist.
"""

from __future__ import annotations

from typing import Any

import pytest

from rcp.db import Database
from tests.factories import make_meeting, proof
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient
from tests.servers import ServerThread

from .pages import TIMEOUT_MS, open_room

pytestmark = [pytest.mark.browser]


def _cookie(client: Any) -> str:
    return f"rcp_session={client.http.cookies['rcp_session']}"


async def test_a_fiche_signed_after_everybody_left_shows_who_was_at_the_discussion(
        new_page: NewPage, live_server: ServerThread, db: Database, login: Any) -> None:
    meeting = await make_meeting(db, cases=1, invite=("surgeon", "medical_oncologist", "radiotherapist",
                                                      "radiologist"))
    case_id = meeting.cases[0].id
    users = {"chair": meeting.coordinator, "surgeon": meeting.invitee("surgeon"),
             "oncologist": meeting.invitee("medical_oncologist"),
             "radiotherapist": meeting.invitee("radiotherapist"), "radiologist": meeting.invitee("radiologist")}
    http = {name: await login(user) for name, user in users.items()}
    base = live_server.url
    assert (await http["chair"].patch(f"/api/meetings/{meeting.id}", json={"status": "live"})).status_code == 200

    chair = await open_room(new_page, base, _cookie(http["chair"]), meeting.id, (1280, 720))
    surgeon = await open_room(new_page, base, _cookie(http["surgeon"]), meeting.id, (1280, 720))
    sockets = {n: await RoomClient.open(base, _cookie(http[n]), meeting.id) for n in ("oncologist", "radiotherapist")}
    try:
        await chair.click(f".room-cases [data-case-id='{case_id}']")
        await surgeon.wait_for_function("(id) => rcpRoom.room.caseId === id", arg=case_id, timeout=TIMEOUT_MS)
        # The radiotherapist leaves while the case is discussed: they were there for it.
        await sockets.pop("radiotherapist").close()
        await chair.wait_for_function(
            "(id) => rcpRoom.room.participants.get(id)?.connected === false", arg=users["radiotherapist"].id,
            timeout=TIMEOUT_MS)
        await chair.click("[data-room-action='close-case']")
        await surgeon.wait_for_function("rcpRoom.room.caseId === null", timeout=TIMEOUT_MS)
        assert not await chair.is_visible("[data-room-action='close-case']")
        # The radiologist comes in once the case is closed: not there for it.
        sockets["radiologist"] = await RoomClient.open(base, _cookie(http["radiologist"]), meeting.id)
        await chair.wait_for_function(
            "(id) => rcpRoom.room.participants.get(id)?.connected === true", arg=users["radiologist"].id,
            timeout=TIMEOUT_MS)
    finally:
        for room in sockets.values():
            await room.close()
    await chair.close()
    await surgeon.close()
    # Everybody left; the meeting is over.
    assert (await http["chair"].patch(f"/api/meetings/{meeting.id}", json={"status": "closed"})).status_code == 200

    me = users["surgeon"].id
    draft = {"proposal": {"type": "surgery", "details": "Lobectomie supérieure droite."},
             "guideline": {"conforms": True}, "case_status": "discussed", "patient_informed": True,
             "responsible_physician": {"name": "Dr Responsable", "user_id": me}}
    for name, value in draft.items():
        saved = await http["surgeon"].put(f"/api/cases/{case_id}/decision/fields/{name}",
                                          json={"value": value, "base_version": 0})
        assert saved.status_code == 200, saved.text
    revision = (await http["surgeon"].get(f"/api/cases/{case_id}/decision")).json()["draft"]["revision"]
    signed = await http["surgeon"].post(f"/api/cases/{case_id}/decision/sign",
                                        json={**proof(users["surgeon"]), "seen_revision": revision})
    assert signed.status_code == 201, signed.text

    fiche = await new_page(viewport=(1280, 720))
    name, value = _cookie(http["surgeon"]).split("=", 1)
    await fiche.context.add_cookies([{"name": name, "value": value, "url": base}])
    await fiche.goto(f"{base}/cases/{case_id}/fiche")
    await fiche.wait_for_selector("[data-attendee]", timeout=TIMEOUT_MS)
    rows = {int(await row.get_attribute("data-attendee") or 0): (await row.inner_text())
            for row in await fiche.query_selector_all("[data-attendee]")}
    present = {users[n].id for n in ("chair", "surgeon", "oncologist", "radiotherapist")}
    assert set(rows) == present
    assert users["radiologist"].id not in rows
    radiotherapist = rows[users["radiotherapist"].id]
    assert "Radiation oncologist" in radiotherapist and " to " in radiotherapist
    assert "outside the quorum" in rows[users["chair"].id]
    assert "Version 1, signed by" in await fiche.inner_text("body")
