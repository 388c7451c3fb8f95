"""The minutes store against real databases: SQLite and PostgreSQL, migrated with alembic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rcp.db import Database, migrate
from rcp.errors import Invalid
from rcp.minutes import store
from rcp.minutes.models import DecisionVersion, WritebackJob
from rcp.minutes.versions import AlreadySigned, FieldConflict, NotAllowedToSign, QuorumNotMet, StaleDraft
from rcp.scheduling.models import Case
from tests.minutes.seeding import NOW, fill, seed


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('minutes') / 'rcp.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def test_draft_is_prefilled_from_the_agenda(database: Database) -> None:
    seeded = await seed(database)
    async with database.session() as s:
        draft = await store.load_draft(s, seeded.case_id)
    assert draft.revision == 0
    assert draft.get("question").value == "Opérable ?"
    assert draft.get("clinical_tnm").value["t"] == "T2a"
    assert draft.get("performance_status").value["grade"] == 1


async def test_field_saves_and_conflicts(database: Database) -> None:
    seeded = await seed(database)
    async with database.session() as s:
        saved = await store.save_field(s, seeded.case_id, "question", "Chirurgie ?", base_version=0,
                                       editor_id=seeded.surgeon)
    assert saved.version == 1
    with pytest.raises(FieldConflict) as exc:
        async with database.session() as s:
            await store.save_field(s, seeded.case_id, "question", "Radiothérapie ?", base_version=0,
                                   editor_id=seeded.oncologist)
    assert exc.value.current.value == "Chirurgie ?"
    async with database.session() as s:
        draft = await store.load_draft(s, seeded.case_id)
    assert draft.get("question").value == "Chirurgie ?" and draft.get("question").editor_id == seeded.surgeon
    with pytest.raises(Invalid):
        async with database.session() as s:
            await store.save_field(s, seeded.case_id, "performance_status", {"grade": 8}, base_version=0,
                                   editor_id=seeded.surgeon)


async def test_concurrent_saves_of_different_fields_are_all_kept(database: Database) -> None:
    seeded = await seed(database)
    names = ["question", "clinical_summary", "comments", "histology_text", "tumour_site_text"]

    async def save(name: str) -> None:
        async with database.session() as s:
            await store.save_field(s, seeded.case_id, name, f"texte {name} é", base_version=0,
                                   editor_id=seeded.surgeon)

    await asyncio.gather(*(save(n) for n in names))
    async with database.session() as s:
        draft = await store.load_draft(s, seeded.case_id)
    for name in names:
        assert draft.get(name).value == f"texte {name} é" and draft.get(name).version == 1
    assert draft.revision == len(names)


async def test_sign_stores_version_jobs_and_runs_hooks_in_one_transaction(database: Database) -> None:
    seeded = await seed(database)
    revision = await fill(database, seeded)
    seen: list[store.StoredVersion] = []

    async def hook(session: AsyncSession, version: store.StoredVersion) -> None:
        seen.append(version)

    store.on_signed.append(hook)
    try:
        with pytest.raises(StaleDraft):
            async with database.session() as s:
                await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision - 1)
        with pytest.raises(NotAllowedToSign):
            async with database.session() as s:
                await store.sign(s, case_id=seeded.case_id, signer_id=seeded.outsider, seen_revision=revision)
        async with database.session() as s:
            stored = await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist,
                                      seen_revision=revision, at=NOW)
    finally:
        store.on_signed.remove(hook)
    assert seen == [stored]
    assert stored.version.number == 1 and stored.version.verify()
    content = stored.version.content
    assert content["quorum"]["status"]["code"] == "ORG-126"
    assert content["patient"]["local_id"].startswith("IPP-")
    assert [a["specialty"] for a in content["attendees"]] == [
        "surgeon", "medical_oncologist", "radiotherapist", "radiologist"]
    assert content["attendees"][3]["quorum_member"] is False
    async with database.session() as s:
        versions = await store.list_versions(s, seeded.case_id)
        jobs = await store.writebacks_for(s, stored.id)
        case = await s.get(Case, seeded.case_id)
    assert [v.version.sha256 for v in versions] == [stored.version.sha256]
    assert sorted(j.kind for j in jobs) == ["kos", "pdf"] and {j.status for j in jobs} == {"pending"}
    assert case is not None and case.status == "discussed"
    with pytest.raises(AlreadySigned):
        async with database.session() as s:
            await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)


async def test_failing_hook_aborts_the_signature(database: Database) -> None:
    seeded = await seed(database)
    revision = await fill(database, seeded)

    async def broken(session: AsyncSession, version: store.StoredVersion) -> None:
        raise RuntimeError("outbox down")

    store.on_signed.append(broken)
    try:
        with pytest.raises(RuntimeError):
            async with database.session() as s:
                await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
    finally:
        store.on_signed.remove(broken)
    async with database.session() as s:
        assert await store.list_versions(s, seeded.case_id) == []


async def test_no_quorum_no_signature(database: Database) -> None:
    seeded = await seed(database, joined=("surgeon", "medical_oncologist"))
    revision = await fill(database, seeded)
    with pytest.raises(QuorumNotMet) as exc:
        async with database.session() as s:
            await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
    assert exc.value.quorum.missing == ("radiotherapist",)


async def test_signed_versions_are_never_updated_and_amend_references(database: Database) -> None:
    seeded = await seed(database)
    revision = await fill(database, seeded)
    async with database.session() as s:
        v1 = await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision,
                              at=NOW)
    with pytest.raises((IntegrityError, DBAPIError)):
        async with database.session() as s:
            await s.exec(sa.update(DecisionVersion).where(col(DecisionVersion.id) == v1.id).values(reason="x"))
    # The signed draft is not editable: only an amendment (its changes, a reason) changes the decision.
    with pytest.raises(AlreadySigned, match="amendment"):
        async with database.session() as s:
            draft = await store.load_draft(s, seeded.case_id)
            await store.save_field(s, seeded.case_id, "comments", "Ajout : bilan cardiaque.",
                                   base_version=draft.get("comments").version, editor_id=seeded.oncologist)
    with pytest.raises(NotAllowedToSign, match="invited"):
        async with database.session() as s:
            await store.amend(s, case_id=seeded.case_id, signer_id=seeded.outsider, reason="x", replaces_number=1,
                              changes={"comments": "Par un absent."})
    async with database.session() as s:
        v2 = await store.amend(s, case_id=seeded.case_id, signer_id=seeded.oncologist, reason="bilan oublié",
                               replaces_number=1, changes={"comments": "Ajout : bilan cardiaque."},
                               at=NOW + timedelta(hours=1))
    assert (v2.version.number, v2.version.replaces, v2.replaces_id) == (2, 1, v1.id)
    assert v2.version.fiche().comments == "Ajout : bilan cardiaque."
    assert v2.version.signer is not None and v2.version.signer.user_id == seeded.oncologist
    async with database.session() as s:
        assert (await store.load_draft(s, seeded.case_id)).get("comments").value == "Ajout : bilan cardiaque."
    async with database.session() as s:
        listed = await store.list_versions(s, seeded.case_id)
        latest = await store.meeting_versions(s, seeded.meeting_id)
    assert [v.version.number for v in listed] == [1, 2]
    assert listed[0].version.sha256 == v1.version.sha256 and listed[1].version.reason == "bilan oublié"
    assert latest[seeded.case_id].version.number == 2


async def test_writeback_retry_and_completion(database: Database) -> None:
    seeded = await seed(database)
    revision = await fill(database, seeded)
    async with database.session() as s:
        stored = await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision,
                                  at=NOW)
    async with database.session() as s:
        jobs = await store.writebacks_for(s, stored.id)
        await store.fail_writeback(s, jobs[0].id or 0, error="PACS answered 409", sop_uid="1.2.3", now=NOW)
    async with database.session() as s:
        due_now = {j.id for j in await store.due_writebacks(s, now=NOW, limit=1000)}
        due_later = {j.id for j in await store.due_writebacks(s, now=NOW + timedelta(minutes=5), limit=1000)}
        job = await s.get(WritebackJob, jobs[0].id)
    assert jobs[0].id not in due_now and jobs[0].id in due_later
    assert job is not None and (job.status, job.attempts, job.stored_sop_uid) == ("failed", 1, "1.2.3")
    async with database.session() as s:
        await store.complete_writeback(s, jobs[0].id or 0, sop_uid="1.2.3", now=NOW)
    async with database.session() as s:
        job = await s.get(WritebackJob, jobs[0].id)
        rows = (await s.exec(select(WritebackJob).where(WritebackJob.version_id == stored.id))).all()
    assert job is not None and job.status == "done" and len(rows) == 2


async def test_racing_signatures_store_one_version(database: Database) -> None:
    seeded = await seed(database)
    revision = await fill(database, seeded)

    async def attempt() -> str:
        try:
            async with database.session() as s:
                await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
        except AlreadySigned:
            return "refused"
        return "signed"

    results = sorted(await asyncio.gather(attempt(), attempt(), attempt()))
    assert results == ["refused", "refused", "signed"]
    async with database.session() as s:
        assert len(await store.list_versions(s, seeded.case_id)) == 1


async def test_deferred_case_keeps_its_draft(database: Database) -> None:
    first = await seed(database)
    await fill(database, first)
    async with database.session() as s:
        await store.save_field(s, first.case_id, "comments", "À rediscuter avec l'histologie.", base_version=0,
                               editor_id=first.surgeon)
    second = await seed(database)
    async with database.session() as s:
        await store.save_field(s, second.case_id, "comments", "Déjà écrit ici.", base_version=0,
                               editor_id=second.surgeon)
        await store.carry_draft(s, first.case_id, second.case_id)
    async with database.session() as s:
        moved = await store.load_draft(s, second.case_id)
    assert moved.get("proposal").value["details"] == "Lobectomie supérieure droite."
    assert moved.get("proposal").version == 1
    assert moved.get("comments").value == "Déjà écrit ici."
    assert moved.revision == sum(moved.versions().values())


async def test_the_fiche_codes_the_board_by_its_type(database: Database) -> None:
    """Issue 14, item 6: an organ board's system (ORG-118) and a transversal board's purpose (ORG-132, ORG-138)
    come from the board's type, whatever its free-text tumour site says."""
    from rcp.scheduling.models import Board, Meeting

    seeded = await seed(database)
    async with database.session() as s:
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None
        board_id = meeting.board_id
        await s.exec(sa.update(Board).where(col(Board.id) == board_id)
                     .values(type_code="312419003", tumour_site="thoracic"))
    async with database.session() as s:
        organ = store.build_fiche(await store.load_context(s, seeded.case_id),
                                  await store.load_draft(s, seeded.case_id)).board
    assert (organ.discussion_nature.code, organ.system and organ.system.code, organ.care) == (
        "ORG-117", "312419003", None)
    async with database.session() as s:
        await s.exec(sa.update(Board).where(col(Board.id) == board_id).values(type_code="ORG-130"))
    async with database.session() as s:
        transversal = store.build_fiche(await store.load_context(s, seeded.case_id),
                                        await store.load_draft(s, seeded.case_id)).board
    assert transversal.discussion_nature.code == "ORG-132" and transversal.system is None
    assert transversal.care is not None and transversal.care.display == "Oncogériatrie"
