"""The document lifecycle at the EPR, end to end with real receivers: a signature (MDM^T02 + DocumentReference), an
amendment (MDM^T10 + a replacing DocumentReference), a withdrawal of the amended version entered in error (MDM^T11
+ entered-in-error), each exactly once — also when the worker stops in the middle of a send and another takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import replace

import httpx
from fhir.resources.R4B.bundle import Bundle
from sqlmodel import select

from rcp.app import create_app
from rcp.auth.models import Role, User
from rcp.auth.passwords import hash_password
from rcp.config import Settings
from rcp.db import Database
from rcp.epr.models import Delivery, DeliveryStatus
from rcp.epr.outbox import enqueue
from rcp.epr.receivers import open_receiver
from rcp.epr.worker import RetryPolicy, Worker
from rcp.identifiers import luhn_key
from rcp.minutes import store
from rcp.scheduling.models import Board, BoardCoordinator, Establishment, Meeting
from tests.epr.samples import full_document, withdrawn
from tests.factories import credentials, give_second_factor, proof
from tests.fixtures.hl7_strict import encapsulated, strict_parse
from tests.fixtures.receivers import FhirServer, MllpListener
from tests.minutes.seeding import fill, seed
from tests.servers import ServerThread, until

PASSWORD = "withdrawal-password-1"


def fresh_ins() -> str:
    body = f"2{secrets.randbelow(99):02d}0449{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


def fresh_finess() -> str:
    """A FINESS number with its Luhn key, unique to this test (FINESS numbers are unique in the database)."""
    body = f"49{secrets.randbelow(10**6):06d}"
    return body + luhn_key(body)


def _event(message: str) -> str:
    return message.split("\r", 1)[0].split("|")[8]


async def test_amendment_then_withdrawal_reach_the_epr_once_each(
    settings: Settings, db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    mllp, fhir = epr_receivers
    seeded = await seed(db, ins=fresh_ins())
    async with db.session() as s:
        oncologist = await s.get(User, seeded.oncologist)
        assert oncologist is not None
        oncologist.password_hash = hash_password(PASSWORD, settings.argon2)
        coordinator = User(username=f"coord-{secrets.token_hex(3)}", role=Role.coordinator, family_name="Secrétaire",
                           password_hash=hash_password(PASSWORD, settings.argon2))
        s.add_all([oncologist, coordinator])
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None
        await s.flush()
        await give_second_factor(s, oncologist.id or 0, oncologist.username, PASSWORD)
        await give_second_factor(s, coordinator.id or 0, coordinator.username, PASSWORD)
        s.add(BoardCoordinator(board_id=meeting.board_id, user_id=coordinator.id))  # type: ignore[arg-type]
        names = oncologist.username, coordinator.username
        # The board is registered in its establishment: the messages leave under its FINESS (MSH-4).
        place = Establishment(finess=fresh_finess(), name="CHU d'Angers")
        s.add(place)
        await s.flush()
        board = await s.get(Board, meeting.board_id)
        assert board is not None
        board.establishment_id = place.id
        s.add(board)
        mllp.finess = place.finess
    revision = await fill(db, seeded, key_images=[])

    server = ServerThread(create_app(replace(settings, epr_receivers=(mllp.url, fhir.url))))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as physician:
            me = (await physician.post("/api/session", json=credentials(names[0], PASSWORD))).json()
            headers = {"X-CSRF-Token": me["csrf_token"]}
            signed = await physician.post(f"/api/cases/{seeded.case_id}/decision/sign", headers=headers,
                                          json={**proof(names[0], PASSWORD), "seen_revision": revision})
            assert signed.status_code == 201, signed.text
            amended = await physician.post(f"/api/cases/{seeded.case_id}/decision/amend", headers=headers,
                                           json={"reason": "EFR oubliées", "replaces": 1,
                                                 "changes": {"comments": "Correction : EFR ajoutées."}})
            assert amended.status_code == 201, amended.text
            await until(lambda: len(mllp.filed) == 2 and len(fhir.documents()) == 2, "T02 and T10 filed")

        async with httpx.AsyncClient(base_url=server.url, timeout=30) as secretary:
            me = (await secretary.post("/api/session", json=credentials(names[1], PASSWORD))).json()
            headers = {"X-CSRF-Token": me["csrf_token"]}
            url = f"/api/cases/{seeded.case_id}/decision/versions/2/withdraw"
            body = {"reason": "Fiche saisie sur le mauvais dossier", "wrong_patient": True}
            refused = await secretary.post(url, headers=headers, json=body)  # no proof: nothing is checked
            assert refused.status_code == 403 and refused.json()["error"] == "reauthentication_required"
            done = await secretary.post(url, headers=headers, json={**body, **proof(names[1], PASSWORD)})
            assert done.status_code == 201, done.text
            assert done.json()["number"] == 2 and done.json()["wrong_patient"] is True
            again = await secretary.post(url, headers=headers, json=body)  # the signing window is open
            assert again.status_code == 409 and again.json()["error"] == "already_withdrawn"

            await until(lambda: len(mllp.filed) == 3, "the T11 filed")
            await until(lambda: sorted(d["status"] for d in fhir.documents()) == ["entered-in-error", "superseded"],
                        "the replacing DocumentReference entered in error")
            page = await secretary.get(f"/cases/{seeded.case_id}", headers={"Accept-Language": "en"})
            assert 'data-withdrawn-version="2"' in page.text and "mauvais dossier" in page.text
            # The coordinator's delivery state names the withdrawal rows as such.
            fragment = await secretary.get(f"/epr/cases/{seeded.case_id}/deliveries",
                                           headers={"Accept-Language": "en"})
            assert fragment.text.count("data-withdrawal") == 2
    finally:
        server.close()
    events = [_event(m) for m in mllp.received]
    assert sorted(events) == ["MDM^T02^MDM_T02", "MDM^T10^MDM_T02", "MDM^T11^MDM_T01"]  # each once, in order
    assert events.index("MDM^T11^MDM_T01") > events.index("MDM^T10^MDM_T02")
    for message in mllp.received:
        strict_parse(message)
    # The signed versions went with their CANCER-FRCP CDA (OBX 1, ^TEXT^XML^Base64^) and their PDF (OBX 2).
    t02 = next(m for m in mllp.received if _event(m) == "MDM^T02^MDM_T02")
    [(xml, cda), (pdf, _)] = encapsulated(t02)
    assert (xml, pdf) == ("XML", "PDF") and b"34794-8" in cda
    for bundle in fhir.received:
        Bundle.model_validate(bundle)
    assert mllp.refusals == []  # every instant with its offset, MSH-4 the establishment's FINESS
    assert {m.split("|", 4)[3] for m in mllp.received} == {mllp.finess}
    withdrawals = [b for b in fhir.received if all(e["request"]["method"] == "PATCH" for e in b["entry"])]
    assert len(withdrawals) == 1
    async with db.session() as s:
        rows = (await s.exec(select(Delivery).where(Delivery.case_id == seeded.case_id))).all()
    assert sorted((r.action, r.document_version) for r in rows) == [
        ("file", 1), ("file", 1), ("file", 2), ("file", 2), ("withdraw", 2), ("withdraw", 2)]
    assert {r.status for r in rows} == {DeliveryStatus.delivered}
    # The imaging file (IHE IOCM): the amendment queued the rejection note of version 1's objects (113001), the
    # withdrawal, through the app's on_withdrawn hooks, that of version 2's for the wrong patient (113037); once each.
    async with db.session() as s:
        numbers = {v.version.number: v.id for v in await store.list_versions(s, seeded.case_id)}
        kinds = {n: sorted(j.kind for j in await store.writebacks_for(s, i)) for n, i in numbers.items()}
    assert kinds == {1: ["pdf", "reject"], 2: ["pdf", "reject_pt"]}


async def test_withdrawal_sent_once_across_a_worker_restart(
    epr_db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    """The first worker stops while the T02 waits for its ACK (its claim stays "sending"); the next one resends
    the T02 with the same MSH-10 once the lease runs out, then sends the T11 — never before the T02."""
    listener, _ = epr_receivers
    document = full_document()
    async with epr_db.session() as session:
        await enqueue(session, document, [listener.url])
        await enqueue(session, withdrawn(document), [listener.url])
    policy = RetryPolicy(base_s=0.1, cap_s=0.2, lease_s=0.5)
    listener.mode = "silent"
    first = Worker(epr_db, [open_receiver(listener.url, timeout=30)], policy=policy, poll_s=0.05, name="first")
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    try:
        await asyncio.wait_for(listener.got_message.wait(), 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await first.close()
    assert [_event(m) for m in listener.received] == ["MDM^T02^MDM_T02"]

    listener.mode = "AA"
    second = Worker(epr_db, [open_receiver(listener.url, timeout=10)], policy=policy, poll_s=0.05, name="second")
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))

    async def done() -> bool:
        async with epr_db.session() as session:
            rows = (await session.exec(select(Delivery))).all()
        return {r.status for r in rows} == {DeliveryStatus.delivered}

    try:
        await until(done, "both deliveries delivered")
    finally:
        stop.set()
        await task
        await second.close()
    events = [_event(m) for m in listener.received]
    assert events == ["MDM^T02^MDM_T02", "MDM^T02^MDM_T02", "MDM^T11^MDM_T01"]
    assert [_event(m) for m in listener.filed.values()] == ["MDM^T02^MDM_T02", "MDM^T11^MDM_T01"]
