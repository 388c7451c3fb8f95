"""Nothing signed is lost: a process that dies right after the signature commits, before any write-back,
leaves the version and its pending write-back jobs; a new process stores the objects and the version is intact."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest

from rcp.db import Database, migrate
from rcp.imaging.synthetic import SyntheticPatient, ct_series
from rcp.minutes import store
from rcp.minutes.writeback import run_due_writebacks
from tests.minutes.memory_archive import FakeArchive, marks
from tests.minutes.seeding import fill, seed

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from rcp.db import Database
    from rcp.minutes import store

    async def main(url, case_id, signer, revision):
        db = Database(url)
        async with db.session() as s:
            stored = await store.sign(s, case_id=case_id, signer_id=signer, seen_revision=revision)
        print(json.dumps({"version_id": stored.id, "sha256": stored.version.sha256}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)   # the server dies before any write-back

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
""")


async def test_kill_between_signature_and_writeback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rcp.db'}"
    await asyncio.to_thread(migrate, url)
    patient = SyntheticPatient("IPP-CRASH", "CHU-ANGERS", "Lefèvre", "Hélène", date(1958, 3, 28), "F")
    series = ct_series(patient, slices=2, rows=16, columns=16)
    db = Database(url)
    try:
        seeded = await seed(db, study_uids=(str(series[0].StudyInstanceUID),), patient_id=patient.patient_id,
                            issuer=patient.issuer, person=patient)
        revision = await fill(db, seeded, marks(series, 1))
    finally:
        await db.close()

    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHILD, url, str(seeded.case_id), str(seeded.oncologist), str(revision)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    signed = json.loads(child.stdout.strip().splitlines()[-1])

    restarted = Database(url)
    try:
        async with restarted.session() as s:
            (version,) = await store.list_versions(s, seeded.case_id)
            jobs = await store.writebacks_for(s, version.id)
        assert version.id == signed["version_id"] and version.version.sha256 == signed["sha256"]
        assert version.version.verify()
        assert sorted((j.kind, j.status) for j in jobs) == [("kos", "pending"), ("pdf", "pending")]
        archive = FakeArchive(series)
        await run_due_writebacks(restarted, archive, limit=10)
        async with restarted.session() as s:
            jobs = await store.writebacks_for(s, version.id)
            (again,) = await store.list_versions(s, seeded.case_id)
        assert {j.status for j in jobs} == {"done"} and len(archive.stored) == 2
        assert again.version.sha256 == signed["sha256"]
    finally:
        await restarted.close()


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
