"""A withdrawal: its own append-only record pointing at the unchanged signed version, its hooks, its outbox rows."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError
from sqlmodel import select

from rcp.db import Database, migrate
from rcp.epr.models import Delivery, DeliveryAction
from rcp.minutes import store, withdrawals
from rcp.minutes.delivery import epr_on_withdrawn, withdrawal_id
from rcp.minutes.models import DecisionVersion
from rcp.minutes.oids import document_ids
from rcp.minutes.withdrawals import AlreadyWithdrawn, NotAllowedToWithdraw, StoredWithdrawal
from tests.minutes.seeding import fill, seed

RECEIVERS = ["file:///tmp/rcp-epr-test-never-written", "mllp://127.0.0.1:9"]


def fresh_ins() -> str:
    body = "2" + "58" + "03" + "49" + f"{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path_factory.mktemp('withdrawal') / 'rcp.db'}"
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def _signed(db: Database) -> tuple[int, int, int]:
    """A case with version 1 signed by the oncologist: (case id, signer id, another physician's id)."""
    seeded = await seed(db, ins=fresh_ins())
    revision = await fill(db, seeded, key_images=[])
    async with db.session() as s:
        await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
    return seeded.case_id, seeded.oncologist, seeded.surgeon


async def test_the_signer_withdraws_once_and_the_version_stays_as_signed(database: Database) -> None:
    case_id, signer, other = await _signed(database)
    async with database.session() as s:
        [before] = await store.list_versions(s, case_id)
    seen: list[StoredWithdrawal] = []

    async def hook(_session: object, withdrawn: StoredWithdrawal) -> None:
        seen.append(withdrawn)

    async with database.session() as s:
        with pytest.raises(NotAllowedToWithdraw):
            await withdrawals.withdraw(s, case_id=case_id, number=1, user_id=other, may_manage=False,
                                       reason="Erreur de dossier")
    async with database.session() as s:
        done = await withdrawals.withdraw(s, case_id=case_id, number=1, user_id=signer, may_manage=False,
                                          reason="Fiche saisie sur le mauvais dossier", wrong_patient=True,
                                          hooks=[hook])
    assert [w.id for w in seen] == [done.id] and done.wrong_patient and done.number == 1
    async with database.session() as s:
        with pytest.raises(AlreadyWithdrawn):
            await withdrawals.withdraw(s, case_id=case_id, number=1, user_id=signer, may_manage=True,
                                       reason="encore")
    async with database.session() as s:
        [listed] = await withdrawals.list_withdrawals(s, case_id)
        [after] = await store.list_versions(s, case_id)
    assert (listed.reason, listed.withdrawn_by, listed.number) == ("Fiche saisie sur le mauvais dossier", signer, 1)
    assert listed.withdrawn_by_name
    # The signed version is untouched: same content hash, still intact.
    assert after.version.sha256 == before.version.sha256 and after.version.verify()


async def test_a_coordinator_withdraws_what_another_signed(database: Database) -> None:
    case_id, _signer, other = await _signed(database)
    async with database.session() as s:
        done = await withdrawals.withdraw(s, case_id=case_id, number=1, user_id=other, may_manage=True,
                                          reason="Mauvais patient")
    assert done.withdrawn_by == other


async def test_withdrawals_are_append_only(database: Database) -> None:
    case_id, signer, _ = await _signed(database)
    async with database.session() as s:
        await withdrawals.withdraw(s, case_id=case_id, number=1, user_id=signer, may_manage=False, reason="Erreur")
    for statement in ("UPDATE decision_withdrawals SET reason = 'autre' WHERE case_id = :case",
                      "DELETE FROM decision_withdrawals WHERE case_id = :case"):
        with pytest.raises(DatabaseError, match="append-only"):
            async with database.session() as s:
                await s.exec(sa.text(statement).bindparams(case=case_id))  # type: ignore[call-overload]
    async with database.session() as s:
        assert len(await withdrawals.list_withdrawals(s, case_id)) == 1


async def test_a_withdrawal_enqueues_one_delivery_per_receiver_after_the_filing(database: Database) -> None:
    case_id, signer, _ = await _signed(database)
    async with database.session() as s:
        version = (await s.exec(select(DecisionVersion).where(DecisionVersion.case_id == case_id))).one()
        [stored] = await store.list_versions(s, case_id)
    _set_id, unique_id = document_ids(stored.version.fiche(), stored.version)
    async with database.session() as s:
        await withdrawals.withdraw(s, case_id=case_id, number=1, user_id=signer, may_manage=False,
                                   reason="Erreur", hooks=[epr_on_withdrawn(RECEIVERS)])
    async with database.session() as s:
        rows = (await s.exec(select(Delivery).where(Delivery.case_id == case_id))).all()
    assert [r.action for r in rows] == [DeliveryAction.withdraw] * 2
    assert {r.document_unique_id for r in rows} == {withdrawal_id(unique_id)}
    assert {r.document_version for r in rows} == {version.number}
    payload = rows[0].payload
    assert payload["status"] == "entered-in-error" and payload["unique_id"] == unique_id
    assert payload["withdrawal"]["reason"] == "Erreur"
