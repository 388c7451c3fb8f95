"""A board's meeting with accounts of its own for the attacks on the signature (issue 13, findings 4 and 8): the
coordinator (a secretary) and four invited physicians who sign in, enter the room, discuss a case and sign.
Shared by test_signature and test_identity_writeback."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rcp.auth.models import Role, User
from rcp.auth.passwords import hash_password
from rcp.clock import utcnow
from rcp.db import Database
from rcp.scheduling.models import (
    Board,
    BoardCoordinator,
    Case,
    Invitation,
    Meeting,
    Patient,
    PatientIdentifier,
)
from tests.conftest import Client, sign_in
from tests.factories import CHEAP_ARGON2, give_second_factor, totp_code
from tests.room.client import RoomClient

__all__ = ["PASSWORD", "PHYSICIANS", "World", "discuss_case", "make_world", "sign_decision"]

PASSWORD = "signature-attack-2026"
PHYSICIANS = ("surgeon", "medical_oncologist", "radiotherapist", "pathologist")


@dataclass
class World:
    """One board's meeting with its own accounts: the coordinator (a secretary) and four invited physicians."""

    base_url: str
    meeting_id: int
    cases: list[int]
    users: dict[str, tuple[int, str]]  # key -> (user id, username)
    clients: dict[str, Client] = field(default_factory=dict)
    rooms: dict[str, RoomClient] = field(default_factory=dict)

    def id(self, key: str) -> int:
        return self.users[key][0]

    async def client(self, key: str) -> Client:
        if key not in self.clients:
            self.clients[key] = await sign_in(self.base_url, self.users[key][1], PASSWORD)
        return self.clients[key]

    async def enter(self, key: str) -> RoomClient:
        client = await self.client(key)
        cookie = f"rcp_session={client.http.cookies['rcp_session']}"
        room = await RoomClient.open(self.base_url, cookie, self.meeting_id)
        assert room.welcome, f"{key} could not enter the room: {room.errors}"
        self.rooms[key] = room
        return room

    async def leave(self, key: str) -> None:
        await self.rooms.pop(key).close()

    async def open_case(self, case_id: int) -> None:
        """The chair opens a case on the agenda; wait until the room has it."""
        chair = self.rooms["coordinator"]
        await chair.send({"type": "case.set", "case_id": case_id})
        # The bound only stops a hang (a loaded machine runs the whole suite on two cores).
        await chair.wait_for(lambda r: bool(r.errors) or any(e["case_id"] == case_id for e in r.of("case.changed")),
                             timeout=60)
        assert not chair.errors, chair.errors

    async def close(self) -> None:
        for room in self.rooms.values():
            await room.close()
        for client in self.clients.values():
            await client.http.aclose()


async def make_world(db: Database, base_url: str, *, cases: int = 1) -> World:
    tag = secrets.token_hex(4)
    digest = hash_password(PASSWORD, CHEAP_ARGON2)
    async with db.session() as s:
        users: dict[str, User] = {
            "coordinator": User(username=f"sec-{tag}", family_name=f"Secrétaire {tag}",
                                given_name="Sophie", role=Role.coordinator,
                                specialty="secretary", password_hash=digest),
        }
        for key in PHYSICIANS:
            users[key] = User(username=f"{key}-{tag}", family_name=f"{key.title()} {tag}",
                              given_name="Test", prefix="Dr", role=Role.clinician,
                              specialty=key, password_hash=digest)
        s.add_all(users.values())
        await s.flush()
        for user in users.values():
            await give_second_factor(s, user.id or 0, user.username, PASSWORD)
        board = Board(name=f"RCP attaque {tag}", tumour_site="thoracic",
                      required_specialties=["surgeon", "medical_oncologist", "radiotherapist"])
        s.add(board)
        await s.flush()
        assert board.id is not None
        s.add(BoardCoordinator(board_id=board.id, user_id=users["coordinator"].id or 0))
        meeting = Meeting(board_id=board.id, title=f"RCP attaque {tag}", starts_at=utcnow())
        s.add(meeting)
        await s.flush()
        assert meeting.id is not None
        for key, user in users.items():
            s.add(Invitation(meeting_id=meeting.id, user_id=user.id or 0, specialty=user.specialty,
                             quorum_member=key != "coordinator"))
        case_ids = []
        for i in range(cases):
            patient = Patient(family_name=f"Attaque{tag}", given_names=f"Patient{i}", birth_date=date(1960, 1, 1),
                              sex="female")
            s.add(patient)
            await s.flush()
            assert patient.id is not None
            s.add(PatientIdentifier(patient_id=patient.id, system="IPP", value=f"SIG-{tag}-{i}", assigner="CHU"))
            case = Case(meeting_id=meeting.id, patient_id=patient.id, position=i, question="Opérable ?",
                        clinical_summary="Nodule pulmonaire.")
            s.add(case)
            await s.flush()
            assert case.id is not None
            case_ids.append(case.id)
        return World(base_url, meeting.id, case_ids, {k: (u.id or 0, u.username) for k, u in users.items()})


async def discuss_case(world: World, case_id: int, who: tuple[str, ...] = PHYSICIANS[:3]) -> None:
    """The chair and ``who`` in the room while the chair opens ``case_id``."""
    await world.enter("coordinator")
    for key in who:
        await world.enter(key)
    await world.open_case(case_id)


async def sign_decision(world: World, key: str, case_id: int, password: str = PASSWORD, revision: int | None = None,
                        code: str | None = None) -> Any:
    """Sign as ``key`` with ``password`` and its current second-factor code (a guessed password goes with a code
    that is not the account's: it is refused before the code matters)."""
    client = await world.client(key)
    if revision is None:
        revision = (await client.get(f"/api/cases/{case_id}/decision")).json()["draft"]["revision"]
    if code is None:
        code = totp_code(world.users[key][1]) if password == PASSWORD else "000000"
    return await client.post(f"/api/cases/{case_id}/decision/sign",
                             json={"password": password, "code": code, "seen_revision": revision})
