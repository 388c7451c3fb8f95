"""Revision 0014: existing boards get a coded type, and organ boards the INCa default required specialties."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from rcp.db import migrate, sync_url

BOARDS = [
    # (name, tumour_site, required_specialties) as boards stood before the charter.
    ("RCP thoracique", "thoracic", []),  # the demo's words
    ("RCP Thorax", "MED-255", []),  # an organ code: its system is the board's type
    ("RCP Sein", "76752008", []),  # already a system code
    ("RCP oncogériatrie", "", []),  # a transversal board named in French
    ("RCP hémato", "", []),
    ("RCP digestive", "digestive", ["surgeon"]),  # a list a coordinator chose stays as it is
    ("Réunion du mardi", "", []),  # nothing to recognise: no guessed type, the standard organ board's quorum
]


def test_existing_boards_get_a_type_and_organ_boards_their_required_specialties(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'charter.sqlite3'}"
    migrate(url, "0013_people_names")  # the revision before the charter
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            for name, site, required in BOARDS:
                connection.execute(sa.text(
                    "INSERT INTO boards (name, tumour_site, required_specialties, minimum_specialties, default_time,"
                    " default_duration_min, timezone, created_at) VALUES (:name, :site, :required, 3, '14:00', 90,"
                    " 'Europe/Paris', '2026-01-01 00:00:00')"), {"name": name, "site": site,
                                                                  "required": json.dumps(required)})
        migrate(url)
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT name, type_code, required_specialties FROM boards ORDER BY id")).all()
    finally:
        engine.dispose()
    found = {name: (code, json.loads(required)) for name, code, required in rows}
    standard = ["surgeon", "medical_oncologist", "radiotherapist"]
    assert found == {
        "RCP thoracique": ("312419003", standard),
        "RCP Thorax": ("312419003", standard),
        "RCP Sein": ("76752008", standard),
        "RCP oncogériatrie": ("ORG-130", ["geriatric_oncologist"]),
        "RCP hémato": ("57171008", ["medical_oncologist"]),
        "RCP digestive": ("86762007", ["surgeon"]),
        "Réunion du mardi": ("", standard),
    }
