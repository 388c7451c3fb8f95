"""A guest is named in parts (or whole with the family name in capitals): a name that cannot be split, or an RPPS
number with a wrong key, is a 422 naming the field, and nothing is saved; the meeting page shows the parts as
French usage writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from rcp.auth.models import User
from rcp.db import Database
from tests.factories import make_invitation, make_meeting, make_user, new_rpps, unique

Login = Any


async def _guest(db: Database, address: str) -> User | None:
    async with db.session() as s:
        return (await s.exec(select(User).where(User.email == address))).first()


async def test_unsplittable_name_or_bad_rpps_is_422_naming_the_field_and_saves_nothing(
        login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=0, starts_at=datetime.now(UTC) + timedelta(days=2))
    client = await login(meeting.coordinator)
    url = f"/api/meetings/{meeting.id}/guests"
    base = {"specialty": "surgeon", "hospital": "CHU X"}

    cases = [
        ({"display_name": "Dr Amélie Rousseau"}, "display_name", "capitals"),
        ({"family_name": " ", "given_name": "Amélie"}, "family_name", "required"),
        ({"family_name": "Rousseau", "prefix": "Monseigneur"}, "prefix", "Dr, Pr"),
        ({"family_name": "Rousseau", "rpps": "10003334828"}, "rpps", "check digit"),
    ]
    for fields, named, says in cases:
        address = f"{unique('guest')}@chu-x.fr"
        refused = await client.post(url, json={**base, **fields, "email": address})
        assert refused.status_code == 422, refused.text
        assert says in refused.json()["fields"][named]
        assert await _guest(db, address) is None  # nothing saved half-way

    address = f"{unique('guest')}@chu-x.fr"
    rpps = new_rpps()
    made = await client.post(url, json={**base, "display_name": "Pr Amélie ROUSSEAU", "rpps": rpps,
                                        "email": address})
    assert made.status_code == 201, made.text
    assert made.json()["display_name"] == "Pr Amélie ROUSSEAU"
    guest = await _guest(db, address)
    assert guest is not None
    assert (guest.prefix, guest.given_name, guest.family_name, guest.rpps) == ("Pr", "Amélie", "ROUSSEAU", rpps)


async def test_the_meeting_page_invites_a_guest_by_parts_and_shows_the_french_form(
        login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=0, starts_at=datetime.now(UTC) + timedelta(days=2))
    client = await login(meeting.coordinator)
    address = f"{unique('guest')}@chu-x.fr"
    form = {"csrf_token": client.csrf, "guest_prefix": "Dr", "guest_given_name": "Élise",
            "guest_family_name": "Le Goff", "guest_email": address, "guest_specialty": "pathologist",
            "guest_hospital": "CHU X", "guest_quorum_member": "1"}
    refused = await client.post(f"/meetings/{meeting.id}/guests", data={**form, "guest_family_name": ""})
    assert refused.status_code == 422
    assert 'data-field="guest_family_name"' in refused.text and "has-error" in refused.text
    assert await _guest(db, address) is None

    sent = await client.post(f"/meetings/{meeting.id}/guests", data=form)
    assert sent.status_code == 303, sent.text
    page = await client.get(f"/meetings/{meeting.id}")
    assert "Dr Élise LE GOFF" in page.text


async def test_a_name_kept_whole_by_the_migration_is_marked_to_complete(login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=0, starts_at=datetime.now(UTC) + timedelta(days=2))
    flagged = meeting.invitee("surgeon")
    async with db.session() as s:
        user = await s.get(User, flagged.id)
        assert user is not None
        user.family_name, user.given_name, user.prefix, user.name_to_check = "Marc Lefèvre", "", "Dr", True
        s.add(user)
    client = await login(meeting.coordinator)
    page = (await client.get(f"/meetings/{meeting.id}")).text
    item = page.split(f'data-user-id="{flagged.id}"', 1)[1].split("</li>", 1)[0]
    assert "Dr Marc Lefèvre" in item and "data-name-to-complete" in item
    other = meeting.invitee("medical_oncologist")
    assert "data-name-to-complete" not in page.split(f'data-user-id="{other.id}"', 1)[1].split("</li>", 1)[0]
    invitations = (await client.get(f"/api/meetings/{meeting.id}")).json()["invitations"]
    assert {i["user_id"]: i["name_to_complete"] for i in invitations}[flagged.id] is True


async def test_invitees_of_a_specialty_are_listed_by_family_name_ignoring_accents_and_case(
        login: Login, db: Database) -> None:
    meeting = await make_meeting(db, cases=0, invite=(), starts_at=datetime.now(UTC) + timedelta(days=2))
    tag = unique("x")[-8:]
    for family, given in (("Zola", "Anne"), (f"élie-{tag}", "Marc"), (f"Elie-{tag}", "Adèle"), ("durand", "Léa")):
        user = await make_user(db, specialty="pathologist", family_name=family, given_name=given)
        await make_invitation(db, meeting.id, user)
    client = await login(meeting.coordinator)
    invitations = (await client.get(f"/api/meetings/{meeting.id}")).json()["invitations"]
    names = [i["display_name"] for i in invitations if i["specialty"] == "pathologist"]
    assert names == ["Dr Léa DURAND", f"Dr Adèle ELIE-{tag.upper()}", f"Dr Marc ÉLIE-{tag.upper()}",
                     "Dr Anne ZOLA"]
