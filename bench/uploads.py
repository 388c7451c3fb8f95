"""Hostile uploads benchmark: the server's memory while four ratio-tuned zips are imported at once (issue 18, item 2).

Runs with no arguments in a few minutes and writes ``bench/results/uploads.json``:

- ``hostile_upload_peak_rss_mb``: the server process's peak resident memory (``VmHWM`` of ``/proc/PID/status``),
  the worse of the two scenarios below: four uploads at once of a zip tuned just under the compression-ratio
  check (``MAX_RATIO``), 16 DICOM entries of 120 MiB each (512 x 512, 16 bits, 240 frames) that deflate to about
  1 MB each, 15.6 MB uploaded per request; goal ≤ 600;
- ``baseline_rss_mb``: its resident memory once started and signed in, before the uploads;
- ``sampled_peak_rss_mb``: the highest ``VmRSS`` sampled every 20 ms during the uploads (the high-water mark
  above also covers start-up);
- ``sampled_peak_rss_mb_until_first_answer``: the same until the first of the four answered. An import that
  stores images attaches them to the case, and the service then prefetches them for the viewer (decoding every
  frame into its frame cache, whose memory budget is 1 GiB by design): what follows the first answer in the
  ``stored`` scenario is that prefetch, not the import;
- ``statuses``: what the four requests answered, and ``fifth_status`` what a fifth upload sent while the four
  are in the service answered (503 with ``Retry-After`` when the imports are full).

Two scenarios, each on ``rcp serve`` in its own process (``tests.servers.ServerProcess``) on a data folder of its
own (SQLite, local archive, the demo loaded), the clients httpx in this process; the figure is the worse peak:

- ``attack``: the entries name another patient than the case's, as an attacker's would: every one is unpacked
  and parsed, and the import is refused as a whole (422);
- ``stored``: the entries are the case patient's images (as a very large legitimate CD would be): the first
  upload to be checked stores its 1.9 GiB in the local archive, the others carry the same instances (being
  imported, or already stored).

Each scenario's own figures are ``hostile_upload_<scenario>_<figure>``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "uploads.json"
ENTRIES = 16
ROWS = COLUMNS = 512
FRAMES = 240  # 512 x 512 x 2 bytes x 240 = 120 MiB
#: One byte in this many is random, the rest zeros: deflates about 130:1, under MAX_RATIO (200).
SPARSENESS = 512
CONCURRENT = 4
GOAL_MB = 600


# -- the hostile zip ----------------------------------------------------------------------------------------------


def _pixels() -> bytes:
    import numpy as np

    data = np.zeros(ROWS * COLUMNS * 2 * FRAMES, dtype=np.uint8)
    rng = np.random.default_rng(18)
    data[::SPARSENESS] = rng.integers(0, 256, size=len(data[::SPARSENESS]), dtype=np.uint8)
    return data.tobytes()


def _header(patient: dict[str, str]) -> bytes:
    """A CT's Part 10 header and attributes with fresh UIDs, up to the Pixel Data element's tag, VR and length."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in patient.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    # (7FE0,0010) OW, reserved, 32-bit length (PS3.5 7.1.2), explicit VR little endian.
    return buffer.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, ROWS * COLUMNS * 2 * FRAMES)


def write_hostile_zip(path: Path, patient: dict[str, str]) -> tuple[int, int]:
    """The zip, written without compressing 2 GB: the pixel data is deflated once after a full flush (RFC 1951:
    the stream after it refers to nothing before), each entry's own header deflated and put in front. Returns
    (bytes on disk, bytes once unpacked)."""
    pixels = _pixels()
    tail = zlib.compressobj(6, zlib.DEFLATED, -15)
    compressed_pixels = tail.compress(pixels) + tail.flush(zlib.Z_FINISH)
    central: list[bytes] = []
    unpacked = 0
    with path.open("wb") as out:
        for index in range(ENTRIES):
            header = _header(patient)
            head = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = head.compress(header) + head.flush(zlib.Z_FULL_FLUSH) + compressed_pixels
            crc = zlib.crc32(pixels, zlib.crc32(header))
            size = len(header) + len(pixels)
            name = f"IMG{index:04d}".encode()
            offset = out.tell()
            # APPNOTE 4.3.7 local file header, 4.3.12 central directory header, 4.3.16 end of central directory.
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0))
            out.write(name + data)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data),
                                       size, len(name), 0, 0, 0, 0, 0, offset) + name)
            unpacked += size
        start = out.tell()
        directory = b"".join(central)
        out.write(directory)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, ENTRIES, ENTRIES, len(directory), start, 0))
        return out.tell(), unpacked


# -- the server and its memory ---------------------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler:
    """``VmRSS`` of one process every 20 ms in a thread, until stopped; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _status_kb(self.pid, "VmRSS")
            self.samples.append((time.monotonic(), rss))
            self.peak_kb = max(self.peak_kb, rss)
            self._stop.wait(0.02)

    def peak_before(self, moment: float) -> int:
        return max((rss for at, rss in self.samples if at <= moment), default=0)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _case_and_client(url: str, meeting_id: int) -> tuple[httpx.AsyncClient, int, dict[str, str]]:
    """The coordinator signed in, the meeting's first case, and its patient as DICOM attributes (PS3.3 C.7.1.1)."""
    from tests.room.client import DEMO_PASSWORD

    client = httpx.AsyncClient(base_url=url, timeout=900)
    made = await client.post("/api/session", json={"username": "secretariat", "password": DEMO_PASSWORD})
    made.raise_for_status()
    client.headers["X-CSRF-Token"] = made.json()["csrf_token"]
    case = (await client.get(f"/api/meetings/{meeting_id}")).json()["cases"][0]
    patient = case["patient"]
    ipp = next(i for i in patient["identifiers"] if i["system"] == "IPP")
    dicom = {"PatientID": ipp["value"], "IssuerOfPatientID": ipp["assigner"],
             "PatientName": f"{patient['family_name']}^{patient['given_names'].replace(' ', '^', 1)}",
             "PatientBirthDate": (patient["birth_date"] or "").replace("-", ""),
             "PatientSex": {"female": "F", "male": "M", "other": "O"}.get(patient["sex"], ""),
             "SpecificCharacterSet": "ISO_IR 192"}
    return client, int(case["id"]), dicom


async def _upload(client: httpx.AsyncClient, case_id: int, zip_path: Path) -> httpx.Response:
    def body() -> Any:
        with zip_path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk

    boundary = "rcpbench"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="cd.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def stream() -> Any:
        yield head
        for chunk in body():
            yield chunk
        yield tail

    length = len(head) + zip_path.stat().st_size + len(tail)
    return await client.post(f"/api/cases/{case_id}/imports", content=stream(),
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                      "Content-Length": str(length)})


async def _fifth(client: httpx.AsyncClient, case_id: int, folder: str) -> httpx.Response:
    """A small upload sent once the four hostile ones are in the service: what a fifth uploader meets. (The bench
    gives the four three seconds to arrive: a figure, not a test; tests/security/test_hostile_uploads.py checks the
    503 with the service's own count.)"""
    small = Path(folder) / "small.bin"
    small.write_bytes(b"not DICOM" * 100)
    await asyncio.sleep(3.0)
    return await _upload(client, case_id, small)


async def scenario(folder: Path, name: str) -> dict[str, Any]:
    """Four uploads at once (and a fifth) of the hostile zip to ``rcp serve`` on a data folder of its own; the zip's
    entries name another patient (``attack``) or the case's own (``stored``)."""
    from tests.room.node import demo_service
    from tests.servers import ServerProcess

    data_dir = folder / name
    settings, meeting_id = await demo_service(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")} | {
        "RCP_ENV": "test", "RCP_DATA_DIR": str(data_dir), "RCP_SECRET_KEY": settings.secret_key,
        "RCP_EMBEDDED_WORKER": "false", "PYTHONPATH": str(ROOT)}
    with ServerProcess([sys.executable, "-m", "rcp.cli", "serve", "--log-level", "warning"], env=env) as server:
        pid = server.process.pid
        client, case_id, patient = await _case_and_client(server.url, meeting_id)
        if name == "attack":
            patient = {"PatientID": "BENCH-NOT-THE-PATIENT", "PatientName": "NOBODY^Bench"}
        zip_path = folder / f"{name}.zip"
        started = time.perf_counter()
        on_disk, unpacked = await asyncio.to_thread(write_hostile_zip, zip_path, patient)
        print(f"{name}: zip of {on_disk / 1e6:.1f} MB holding {unpacked / 2**20:.0f} MiB "
              f"({unpacked / on_disk:.0f}:1), made in {time.perf_counter() - started:.1f} s")
        others = [httpx.AsyncClient(base_url=server.url, timeout=900, headers=client.headers,
                                    cookies=client.cookies) for _ in range(CONCURRENT)]
        try:
            baseline_kb = _status_kb(pid, "VmRSS")
            with Sampler(pid) as sampler:
                started = time.perf_counter()
                uploads = [asyncio.create_task(_upload(c, case_id, zip_path)) for c in others]
                fifth = await _fifth(client, case_id, str(folder))
                await asyncio.wait(uploads, return_when=asyncio.FIRST_COMPLETED)
                first_answer = time.monotonic()
                answers = await asyncio.gather(*uploads)
                elapsed = time.perf_counter() - started
            peak_kb = _status_kb(pid, "VmHWM")
        finally:
            await asyncio.gather(client.aclose(), *(c.aclose() for c in others))
    return {"peak_rss_mb": round(peak_kb / 1024, 1), "baseline_rss_mb": round(baseline_kb / 1024, 1),
            "sampled_peak_rss_mb": round(sampler.peak_kb / 1024, 1),
            "sampled_peak_rss_mb_until_first_answer": round(sampler.peak_before(first_answer) / 1024, 1),
            "statuses": sorted(a.status_code for a in answers), "fifth_status": fifth.status_code,
            "fifth_retry_after": fifth.headers.get("retry-after"), "seconds": round(elapsed, 1)}


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rcp-bench-uploads-") as folder:
        results = {name: await scenario(Path(folder), name) for name in ("attack", "stored")}
    figures: dict[str, Any] = {"hostile_upload_peak_rss_mb": max(r["peak_rss_mb"] for r in results.values())}
    for name, result in results.items():
        figures |= {f"hostile_upload_{name}_{key}": value for key, value in result.items()}
    print(f"{'scenario':<10} {'peak MB':>8} {'base MB':>8} {'sampled':>8} {'to 1st':>8} {'s':>6}  "
          "statuses (4 at once) 5th  goal")
    for name, r in results.items():
        print(f"{name:<10} {r['peak_rss_mb']:>8} {r['baseline_rss_mb']:>8} {r['sampled_peak_rss_mb']:>8} "
              f"{r['sampled_peak_rss_mb_until_first_answer']:>8} {r['seconds']:>6}  {r['statuses']} "
              f"{r['fifth_status']}  ≤ {GOAL_MB}")
    print(f"hostile_upload_peak_rss_mb = {figures['hostile_upload_peak_rss_mb']} (goal ≤ {GOAL_MB})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"figures": figures}, indent=2) + "\n")
    print(f"written {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
