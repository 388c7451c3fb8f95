"""Staging in the stored record: drafts migrated with their defaulted edition emptied and flagged, and the edition
required at signature through the real route (issue 14, item 3)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlmodel import col, select

from rcp.db import ALEMBIC_DIR, Database, downgrade, migrate
from rcp.errors import Invalid
from rcp.minutes import render, store
from rcp.minutes.models import DecisionDraft, DecisionVersion
from tests.factories import make_meeting
from tests.security.signing_world import World, discuss_case, make_world, sign_decision

LEGACY = {"t": "T2", "n": "N0", "m": "M0", "edition": "8", "stage": "IIA"}


def _staging_revision() -> tuple[str, str]:
    """(this migration's revision, the one before it), whatever number it has in the chain."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    found = next(r for r in ScriptDirectory.from_config(config).walk_revisions()
                 if r.revision.endswith("_staging_edition_to_confirm"))
    assert isinstance(found.down_revision, str)
    return found.revision, found.down_revision


def _field(value: dict[str, Any]) -> dict[str, Any]:
    return {"value": value, "version": 1, "editor_id": None, "updated_at": datetime.now(UTC).isoformat()}


@pytest.fixture
async def old_database(tmp_path: Path) -> AsyncIterator[tuple[str, Database]]:
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    await asyncio.to_thread(migrate, url)
    database = Database(url)
    yield url, database
    await database.close()


async def test_migrated_draft_shows_the_edition_to_confirm(old_database: tuple[str, Database]) -> None:
    url, database = old_database
    meeting = await make_meeting(database, cases=2)
    draft_case, signed_case = (c.id for c in meeting.cases)
    signer = meeting.invitations[0].user.id
    async with database.session() as s:
        for case_id in (draft_case, signed_case):
            s.add(DecisionDraft(case_id=case_id, fields={"clinical_tnm": _field(dict(LEGACY)),
                                                         "pathological_tnm": _field({**LEGACY, "t": "T1b"})},
                                revision=2))
        s.add(DecisionVersion(case_id=signed_case, number=1, content={"clinical_tnm": LEGACY}, sha256="0" * 64,
                              signed_by=signer, signed_at=datetime.now(UTC)))
    revision, before = _staging_revision()
    # The stored drafts as the previous revision left them, then this revision over them.
    await asyncio.to_thread(downgrade, url, before)
    await asyncio.to_thread(migrate, url)

    async with database.session() as s:
        draft = await store.load_draft(s, draft_case)
        context = await store.load_context(s, draft_case)
        untouched = await store.load_draft(s, signed_case)
    clinical = dict(draft.get("clinical_tnm").value)
    assert clinical["edition"] == "" and clinical["edition_to_confirm"] is True
    assert clinical["previous_edition"] == "8" and clinical["prefix"] == "c"
    assert draft.get("pathological_tnm").value["prefix"] == "p"
    # A signed case's draft keeps what was signed.
    assert dict(untouched.get("clinical_tnm").value) == LEGACY

    fiche = store.build_fiche(context, draft)
    assert fiche.clinical_tnm is not None and fiche.clinical_tnm.edition_to_confirm
    assert fiche.clinical_tnm.label() == "cT2 N0 M0" and fiche.pathological_tnm is not None
    page = render.fiche_html(fiche)
    assert page.count("data-edition-to-confirm") == 2
    assert "cT2 N0 M0 (édition TNM à confirmer), stade IIA" in page  # the default locale: French
    with pytest.raises(Invalid) as refused:
        fiche.check_complete()
    assert {"clinical_tnm.edition", "pathological_tnm.edition"} <= set(refused.value.fields)

    # Down again: the edition comes back for the code that needs one.
    await asyncio.to_thread(downgrade, url, before)
    async with database.session() as s:
        row = (await s.exec(select(DecisionDraft).where(col(DecisionDraft.case_id) == draft_case))).one()
    assert row.fields["clinical_tnm"]["value"]["edition"] == "8"
    assert "edition_to_confirm" not in row.fields["clinical_tnm"]["value"]
    await asyncio.to_thread(migrate, url, revision)


# -- through the real route --------------------------------------------------------------------------------------


@pytest.fixture
async def world(db: Database, live_server: Any) -> AsyncIterator[World]:
    found = await make_world(db, live_server.url)
    try:
        yield found
    finally:
        await found.close()


async def _put(world: World, case_id: int, name: str, value: Any) -> Any:
    client = await world.client("surgeon")
    current = (await client.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"][name]["version"]
    return await client.put(f"/api/cases/{case_id}/decision/fields/{name}",
                            json={"value": value, "base_version": current})


async def test_signature_needs_the_tnm_edition_and_the_pdf_keeps_the_prefix(world: World) -> None:
    case_id = world.cases[0]
    await discuss_case(world, case_id)
    for name, value in {
        "proposal": {"type": "surveillance", "details": "Surveillance après réponse complète."},
        "guideline": {"conforms": True}, "case_status": "discussed",
        "responsible_physician": {"name": "Dr Surgeon", "specialty": "surgeon", "user_id": world.id("surgeon")},
        "patient_informed": True,
        "diagnosis_date": "2026-03",
        "laterality": "right",
    }.items():
        assert (await _put(world, case_id, name, value)).status_code == 200, name

    # Nonsense is refused naming the field, and nothing is stored.
    bad = await _put(world, case_id, "pathological_tnm", {"text": "ypT0N0M0b", "edition": "8"})
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"pathological_tnm.m"}
    wrong_field = await _put(world, case_id, "clinical_tnm", {"text": "ypT0N0M0", "edition": "8"})
    assert wrong_field.status_code == 422 and set(wrong_field.json()["fields"]) == {"clinical_tnm.prefix"}
    client = await world.client("surgeon")
    fields = (await client.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"]
    assert fields["pathological_tnm"]["value"] is None and fields["clinical_tnm"]["value"] is None

    # A draft may lack the edition; the signature may not.
    assert (await _put(world, case_id, "pathological_tnm", {"text": "ypT0N0M0"})).status_code == 200
    refused = await sign_decision(world, "surgeon", case_id)
    assert refused.status_code == 422, refused.text
    assert set(refused.json()["fields"]) == {"pathological_tnm.edition"}

    assert (await _put(world, case_id, "pathological_tnm", {"text": "ypT0N0M0", "edition": "8"})).status_code == 200
    signed = await sign_decision(world, "surgeon", case_id)
    assert signed.status_code in (200, 201), signed.text

    pdf = await client.get(f"/cases/{case_id}/fiche.pdf", headers={"Accept-Language": "en"})
    assert pdf.status_code == 200
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "ypT0 N0 M0 (TNM 8th ed.)" in text
    assert "cT0" not in text
    assert "03/2026" in text and "Right" in text
