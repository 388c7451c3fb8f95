"""Minutes benchmark: what a signature costs, from the draft to the objects written back to the imaging file.

Measured on a realistic fiche (long clinical summary, 6 attendees, 4 key images), in one run:

* ``canonical_sha256_us``: canonical JSON + SHA-256 of the fiche content;
* ``fiche_parse_us``: ``Fiche.from_content`` (every field checked against the CI-SIS value sets);
* ``pdf_ms``: the fiche PDF (fpdf2, DejaVu embedded); ``pdf_kb`` its size;
* ``minutes_pdf_ms_10_cases``: a meeting's minutes with 10 signed cases;
* ``kos_ms`` / ``encapsulated_pdf_ms``: the DICOM Key Object Selection and Encapsulated PDF instances;
* ``field_saves_per_s_sqlite``: draft field saves through the store (one transaction each, SQLite file);
* ``sign_ms_sqlite``: a full signature in the store (context, checks, version, write-back jobs).

    .venv/bin/python bench/minutes.py      # about 20 s; writes bench/results/minutes.json
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcp.db import Database, migrate
from rcp.imaging.synthetic import SyntheticPatient, ct_series
from rcp.minutes import store
from rcp.minutes.dicom import encapsulated_fiche, key_image_notes
from rcp.minutes.fiche import Fiche
from rcp.minutes.render import MinutesItem, fiche_pdf, minutes_pdf
from rcp.minutes.versions import Draft, content_sha256, sign
from tests.minutes.conftest import BASE
from tests.minutes.seeding import fill, seed

NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2]


def realistic_content(series: list[Any]) -> dict[str, Any]:
    content = copy.deepcopy(BASE)
    content["clinical_summary"] = (
        "Patiente de 68 ans, carcinome canalaire infiltrant du sein droit, grade II, "
        "RE+ RP+ HER2-, Ki67 18 %. Antécédents : HTA, diabète de type 2. "
    ) * 12
    content["attendees"] += [
        {"user_id": 5, "name": "Dr Élise Anapath", "specialty": "pathologist"},
        {"user_id": 6, "name": "Dr Marc Médecine nucléaire", "specialty": "nuclear_medicine"},
    ]
    content["study_uids"] = [str(series[0].StudyInstanceUID)]
    content["key_images"] = [
        {
            "study_uid": str(ds.StudyInstanceUID),
            "series_uid": str(ds.SeriesInstanceUID),
            "sop_uid": str(ds.SOPInstanceUID),
            "description": f"Coupe {i} : lésion rehaussée de 22 mm",
        }
        for i, ds in enumerate(series[:4], 1)
    ]
    return content


async def store_figures() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        await asyncio.to_thread(migrate, url, "0004_minutes")
        db = Database(url)
        try:
            seeded = await seed(db)
            saves = 60
            start = time.perf_counter()
            for i in range(saves):
                async with db.session() as s:
                    await store.save_field(
                        s,
                        seeded.case_id,
                        "comments",
                        f"Commentaire {i}",
                        base_version=i,
                        editor_id=seeded.surgeon,
                    )
            per_s = saves / (time.perf_counter() - start)
            signs = []
            for _ in range(5):
                case = await seed(db)
                revision = await fill(db, case)
                start = time.perf_counter()
                async with db.session() as s:
                    await store.sign(
                        s, case_id=case.case_id, signer_id=case.oncologist, seen_revision=revision
                    )
                signs.append(time.perf_counter() - start)
            signs.sort()
            return {"field_saves_per_s_sqlite": round(per_s, 1), "sign_ms_sqlite": round(signs[2] * 1000, 1)}
        finally:
            await db.close()


def main() -> None:
    patient = SyntheticPatient("IPP-BENCH", "CHU-BENCH", "Lefèvre", "Hélène", date(1958, 3, 28), "F")
    series = ct_series(patient, slices=6, rows=64, columns=64)
    content = realistic_content(series)
    fiche = Fiche.from_content(content)
    version = sign(
        fiche,
        draft=Draft(case_id=fiche.case_id),
        seen_revision=0,
        signer_id=2,
        invited_ids={1, 2, 3, 4, 5, 6},
        existing=[],
        at=NOW,
    )
    canonical = fiche.to_content()
    pdf = fiche_pdf(fiche, version)
    figures: dict[str, float] = {
        "canonical_sha256_us": round(timed(lambda: content_sha256(canonical), 200) * 1e6, 1),
        "fiche_parse_us": round(timed(lambda: Fiche.from_content(content), 200) * 1e6, 1),
        "pdf_ms": round(timed(lambda: fiche_pdf(fiche, version), 10) * 1000, 1),
        "pdf_kb": round(len(pdf) / 1024, 1),
        "minutes_pdf_ms_10_cases": round(
            timed(lambda: minutes_pdf("RCP Sein", fiche.meeting_date, [MinutesItem(fiche, version)] * 10), 3)
            * 1000,
            1,
        ),
        "kos_ms": round(timed(lambda: key_image_notes(fiche, version, series), 10) * 1000, 1),
        "encapsulated_pdf_ms": round(
            timed(lambda: encapsulated_fiche(pdf, fiche, version, series[0]), 20) * 1000, 2
        ),
    }
    figures.update(asyncio.run(store_figures()))
    width = max(len(k) for k in figures)
    print(f"{'figure':<{width}}  value")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "minutes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
