"""Draft stagings lose the TNM edition they were given by default, and say so (issue 14, item 3).

Until this revision a TNM without an edition became edition 8 (the agenda's free text was read with edition 8,
and the stored form had no way to say "not given"), and its prefix was implied by the field (clinical "c",
pathological "p"). A stored 8 cannot be told from a typed one, so in every draft that is not signed yet each
``clinical_tnm`` / ``pathological_tnm`` value stored in the old form (no ``prefix`` key):

- keeps its prefix explicitly, as it was shown ("c" or "p", ``rcp.minutes.staging``);
- has its edition emptied and flagged: ``edition_to_confirm`` true and ``previous_edition`` the value it had.
  The fiche page shows "TNM edition to confirm", and signing asks for the edition (7 or 8).

Signed versions are never touched (they are append-only, and their edition was in the signed text); neither are the
drafts of signed cases (an amendment starts from what was signed).

Downgrade puts ``previous_edition`` back, or 8 where a draft saved afterwards has none (the old rule's default), and
drops the flags; values that only the new rules accept (N or M not stated) stay and the old code names them as
invalid fields.

Revision ID: 0015_staging_edition_to_confirm
Revises: 0014_board_charter
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from alembic import op

revision = "0015_staging_edition_to_confirm"
down_revision = "0014_board_charter"
branch_labels = None
depends_on = None

_TNM_FIELDS = {"clinical_tnm": "c", "pathological_tnm": "p"}
_drafts = sa.table("decision_drafts", sa.column("id", sa.Integer), sa.column("case_id", sa.Integer),
                   sa.column("fields", sa.JSON))
_versions = sa.table("decision_versions", sa.column("case_id", sa.Integer))


def _unsigned_drafts() -> list[tuple[int, dict[str, Any]]]:
    signed = sa.select(_versions.c.case_id)
    rows = op.get_bind().execute(
        sa.select(_drafts.c.id, _drafts.c.fields).where(_drafts.c.case_id.not_in(signed))
    ).all()
    return [(row.id, dict(row.fields or {})) for row in rows]


def _rewrite(change: Any) -> None:
    for draft_id, fields in _unsigned_drafts():
        changed = False
        for name, letter in _TNM_FIELDS.items():
            stored = fields.get(name)
            value = stored.get("value") if isinstance(stored, dict) else None
            if isinstance(value, dict):
                new = change(dict(value), letter)
                if new is not None:
                    fields[name] = {**stored, "value": new}
                    changed = True
        if changed:
            op.get_bind().execute(sa.update(_drafts).where(_drafts.c.id == draft_id).values(fields=fields))


def _to_confirm(value: dict[str, Any], letter: str) -> dict[str, Any] | None:
    if "prefix" in value:
        return None  # already in the new form
    value["prefix"] = letter
    value["previous_edition"] = str(value.get("edition") or "")
    value["edition"] = ""
    value["edition_to_confirm"] = True
    return value


def _back(value: dict[str, Any], _letter: str) -> dict[str, Any] | None:
    if value.get("edition") and "edition_to_confirm" not in value:
        return None
    value["edition"] = value.pop("previous_edition", "") or value.get("edition") or "8"
    value.pop("edition_to_confirm", None)
    return value


def upgrade() -> None:
    _rewrite(_to_confirm)


def downgrade() -> None:
    _rewrite(_back)
