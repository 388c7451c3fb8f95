"""The EPR hook: a signature enqueues its deliveries in the same transaction (with the EPR's own tables)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlmodel import select

from rcp.db import Database, migrate
from rcp.epr.models import Delivery
from rcp.minutes import store
from rcp.minutes.delivery import document_ids, epr_on_signed
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.versions import Draft, sign
from rcp.people import PersonName
from tests.minutes.seeding import fill, seed

#: The account that signs (as rcp.minutes.store.signer_account loads it): an attendee of the fiche, user 2.
SIGNER = Physician(name="Dr Bruno ONCOLOGUE", specialty="medical_oncologist", user_id=2,
                   person=PersonName(family="Oncologue", given="Bruno", prefix="Dr"))


def fresh_ins() -> str:
    body = "2" + "58" + "03" + "49" + f"{secrets.randbelow(10**6):06d}"  # sex, year, month, dept, commune+order
    return body + f"{97 - int(body) % 97:02d}"


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path_factory.mktemp('delivery') / 'rcp.db'}"
    await asyncio.to_thread(migrate, url)  # every head: the EPR's outbox tables too
    db = Database(url)
    yield db
    await db.close()


async def deliveries(db: Database, case_id: int) -> list[Delivery]:
    async with db.session() as s:
        return list((await s.exec(select(Delivery).where(Delivery.case_id == case_id))).all())


async def test_signature_and_correction_enqueue_deliveries(database: Database) -> None:
    seeded = await seed(database, ins=fresh_ins())
    revision = await fill(database, seeded)
    hook = epr_on_signed(["file:///tmp/rcp-epr-test-never-written", "mllp://127.0.0.1:9"])
    store.on_signed.append(hook)
    try:
        async with database.session() as s:
            v1 = await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
        rows = await deliveries(database, seeded.case_id)
        assert len(rows) == 2 and {r.document_version for r in rows} == {1}
        set_id, unique_id = document_ids(v1.version.fiche(), v1.version)
        assert {r.document_unique_id for r in rows} == {unique_id}
        async with database.session() as s:
            v2 = await store.amend(s, case_id=seeded.case_id, signer_id=seeded.oncologist, reason="oubli",
                                   replaces_number=1, changes={"comments": "Correction."})
        rows = await deliveries(database, seeded.case_id)
        assert sorted(r.document_version for r in rows) == [1, 1, 2, 2]
        assert document_ids(v2.version.fiche(), v2.version)[0] == set_id
    finally:
        store.on_signed.remove(hook)


async def test_patient_without_qualified_ins_is_delivered_by_ipp(database: Database) -> None:
    """The seeded patient has an IPP and no INS (a provisional identity): the document goes by its IPP, and says
    the identity is provisional (the INS would not leave the service even if it were known)."""
    seeded = await seed(database)
    revision = await fill(database, seeded)
    hook = epr_on_signed(["mllp://127.0.0.1:9"])
    store.on_signed.append(hook)
    try:
        async with database.session() as s:
            await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
    finally:
        store.on_signed.remove(hook)
    [row] = await deliveries(database, seeded.case_id)
    patient = row.payload["patient"]
    assert (patient["ins"], patient["identity_status"]) == ("", "provisional")
    assert patient["ipp"].startswith("IPP-")
    async with database.session() as s:
        assert len(await store.list_versions(s, seeded.case_id)) == 1


def test_document_ids_are_stable_oids(content: Any, now: datetime) -> None:
    fiche = Fiche.from_content(content())
    version = sign(fiche, draft=Draft(case_id=12), seen_revision=0, signer=SIGNER, invited_ids={1, 2, 3, 4},
                   existing=[], at=now)
    other = Fiche.from_content(content(case_id=13))
    assert document_ids(fiche, version) == document_ids(fiche, version)
    set_id, unique_id = document_ids(fiche, version)
    assert set_id.startswith("2.25.") and unique_id.startswith("2.25.") and len(unique_id) <= 64
    assert document_ids(other, version)[0] != set_id


def test_the_document_author_is_the_signer_account(content: Any, now: datetime) -> None:
    from rcp.minutes.delivery import to_signed_document

    fiche = Fiche.from_content(content(responsible_physician={"name": "Dr Amélie Rousseau", "user_id": 3}))
    version = sign(fiche, draft=Draft(case_id=12), seen_revision=0, signer=SIGNER, invited_ids={1, 2, 3, 4},
                   existing=[], at=now)
    document = to_signed_document(fiche, version, b"%PDF-1.4 fiche")
    # The signer account's name in its parts (rcp.people), never split from "Dr Bruno ONCOLOGUE".
    [author] = document.authors
    assert (author.prefix, author.given_names, author.family_name) == ("Dr", "Bruno", "Oncologue")
    assert author.specialty == "medical_oncologist"
