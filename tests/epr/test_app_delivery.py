"""From a signature in the app to the EPR: the whole path through the served service, real receivers.

A physician signs a decision over HTTP; the signature's transaction writes the outbox rows; the worker inside
``rcp serve`` delivers an MDM^T02 over MLLP and an ITI-65 Bundle to the FHIR receiver; a correction follows as
an MDM^T10 and a replacing DocumentReference; the coordinator sees every receiver's state.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

import httpx
from sqlmodel import select

from rcp.app import create_app
from rcp.auth.models import Role, User
from rcp.auth.passwords import hash_password
from rcp.config import Settings
from rcp.db import Database
from rcp.scheduling.models import BoardCoordinator, Meeting
from tests.factories import credentials, give_second_factor, proof
from tests.fixtures.receivers import FhirServer, MllpListener
from tests.minutes.seeding import fill, seed
from tests.servers import ServerThread, until

PASSWORD = "signature-password-1"


def fresh_ins() -> str:
    body = f"1{secrets.randbelow(99):02d}0469{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


async def test_signature_reaches_both_receivers_once_and_correction_follows(
    settings: Settings, db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    mllp, fhir = epr_receivers
    seeded = await seed(db, ins=fresh_ins())
    async with db.session() as s:
        for user_id in (seeded.oncologist, seeded.surgeon):
            user = await s.get(User, user_id)
            assert user is not None
            user.password_hash = hash_password(PASSWORD, settings.argon2)
            s.add(user)
        coordinator = User(username=f"coord-{secrets.token_hex(3)}", role=Role.coordinator,
                           password_hash=hash_password(PASSWORD, settings.argon2))
        s.add(coordinator)
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None
        await s.flush()
        await give_second_factor(s, coordinator.id or 0, coordinator.username, PASSWORD)
        s.add(BoardCoordinator(board_id=meeting.board_id, user_id=coordinator.id))  # type: ignore[arg-type]
        oncologist = await s.get(User, seeded.oncologist)
        assert oncologist is not None
        oncologist_name, coordinator_name = oncologist.username, coordinator.username
    revision = await fill(db, seeded, key_images=[])

    app_settings = replace(settings, epr_receivers=(mllp.url, fhir.url))
    server = ServerThread(create_app(app_settings))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as physician:
            me = (await physician.post("/api/session", json=credentials(oncologist_name, PASSWORD))).json()
            headers = {"X-CSRF-Token": me["csrf_token"]}
            signed = await physician.post(f"/api/cases/{seeded.case_id}/decision/sign", headers=headers,
                                          json={**proof(oncologist_name, PASSWORD), "seen_revision": revision})
            assert signed.status_code == 201, signed.text

            await until(lambda: len(mllp.filed) == 1 and len(fhir.received) >= 1, "the first delivery")
            [t02] = mllp.filed.values()
            segments = {line.split("|", 1)[0]: line for line in t02.replace("\n", "\r").split("\r") if line}
            assert "MDM^T02" in segments["MSH"]
            # PID-3: the (test) INS of a qualified identity with its OID (1.2.250.1.213.1.4.10), then the IPP;
            # PID-32 says the identity is qualified.
            assert "&1.2.250.1.213.1.4.10&ISO^INS~" in segments["PID"] and "^PI" in segments["PID"]
            assert segments["PID"].split("|")[32] == "QUAL"
            references = [e["resource"] for e in fhir.received[0]["entry"]
                          if e["resource"]["resourceType"] == "DocumentReference"]
            assert references and references[0]["type"]["coding"][0]["code"] == "34794-8"

            # The signed draft is not editable: the correction carries its changes.
            amended = await physician.post(f"/api/cases/{seeded.case_id}/decision/amend", headers=headers,
                                           json={"reason": "EFR oubliées", "replaces": 1,
                                                 "changes": {"comments": "Correction : EFR ajoutées."}})
            assert amended.status_code == 201, amended.text
            await until(lambda: len(mllp.filed) == 2, "the correction over MLLP")
            assert any("MDM^T10" in message for message in mllp.filed.values())
            await until(lambda: len(fhir.received) >= 2, "the correction over FHIR")
            replacing = [e["resource"] for e in fhir.received[-1]["entry"]
                         if e["resource"]["resourceType"] == "DocumentReference"]
            assert replacing[0]["relatesTo"][0]["code"] == "replaces"

        async with httpx.AsyncClient(base_url=server.url, timeout=30) as secretary:
            await secretary.post("/api/session", json=credentials(coordinator_name, PASSWORD))
            status = await secretary.get(f"/api/epr/cases/{seeded.case_id}/deliveries")
            assert status.status_code == 200
            rows = status.json()
            rows = rows["deliveries"] if isinstance(rows, dict) else rows
            assert len(rows) == 4 and {r["status"] for r in rows} == {"delivered"}
            # The coordinator's meeting and case pages load the same state (deliveries.js fills the section in).
            english = {"Accept-Language": "en"}
            page = await secretary.get(f"/meetings/{seeded.meeting_id}", headers=english)
            assert f'data-deliveries-url="/epr/meetings/{seeded.meeting_id}/deliveries"' in page.text
            case_page = await secretary.get(f"/cases/{seeded.case_id}", headers=english)
            assert f'data-deliveries-url="/epr/cases/{seeded.case_id}/deliveries"' in case_page.text
            fragment = await secretary.get(f"/epr/cases/{seeded.case_id}/deliveries", headers=english)
            assert fragment.status_code == 200 and fragment.text.count("Delivered") >= 4
    finally:
        server.close()
    # Exactly once per receiver and version, whatever retries happened.
    assert len(mllp.filed) == 2
    async with db.session() as s:
        assert (await s.exec(select(User).where(User.username == coordinator_name))).one()
