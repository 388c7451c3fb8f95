"""Imaging benchmark: a 300-slice 512x512 CT in a real Orthanc, through the service vs. straight from WADO-RS.

Measured in one run, side by side:

* ``first_image_ms_cold`` / ``first_image_ms_prefetched``: a signed-in client opens the series (descriptor) and
  gets its first frame, over HTTP through the whole app (auth, audit), before and after the case was prefetched;
* ``series_s_service``: the whole series (300 frames, 6 connections like a browser) through the app, prefetched;
  ``series_s_service_cold`` the same straight after a restart with an empty cache;
* ``series_s_wadors``: the whole series straight from Orthanc (one WADO-RS retrieve, raw Explicit VR LE);
* ``series_bytes_ratio``: bytes of the service's frames / bytes of Orthanc's raw WADO-RS answer;
* ``cached_frames_per_s``: cached frames served over HTTP by the imaging routes (uvicorn, 6 keep-alive
  connections, authorisation per study remembered) — the server's capacity, without the per-request session
  lookup of the full app; ``cached_frames_per_s_http`` through the whole app (session cookie looked up in the
  database on every request); ``cached_frames_per_s_service_layer`` ``ImagingService.frame`` in-process;
* ``event_loop_lag_ms_*_cold_series``: how late a 5 ms timer fires on the service's event loop while a cold
  series is pulled from Orthanc, decoded and encoded (the decoding runs in the service's threads);
* ``decode_ms_per_slice``: pydicom read + decode + modality LUT of one slice; ``encode_ms_per_slice``: the
  delta16-deflate encoding.

The app runs in a child process (uvicorn on loopback) built exactly as ``rcp serve`` builds it, plus the imaging
routes and ``app.state.imaging`` when app.py does not yet mount them.

    .venv/bin/python bench/imaging.py      # about a minute; writes bench/results/imaging.json
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
import pydicom

from rcp.config import Settings
from rcp.imaging.dicomweb import DicomWebClient
from rcp.imaging.frames import decode_frame, encode_frame
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from tests.fixtures.orthanc import OrthancProcess
from tests.servers import ServerProcess

SLICES = 300
PASSWORD = "rcp-demo-2026"
IPP = "IPP100001"
ISSUER = "CHU de Lyon"
CONNECTIONS = 6


# --- the server (child process) -------------------------------------------------------------------------------


async def _serve(data_dir: str, pacs_url: str, fd: int) -> None:
    import uvicorn

    from rcp.app import create_app
    from rcp.imaging import routes as imaging_routes
    from rcp.imaging.service import ImagingService

    settings = Settings(env="test", data_dir=Path(data_dir), pacs_url=pacs_url)
    app = create_app(settings)
    if not any(getattr(r, "endpoint", None) is imaging_routes.frame for r in app.router.routes):
        app.router.routes[:0] = imaging_routes.routes
    if getattr(app.state, "imaging", None) is None:
        app.state.imaging = await ImagingService.open(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    await server.serve(sockets=[socket.socket(fileno=fd)])  # bound by the parent (tests.servers.ServerProcess)


async def _serve_imaging_only(data_dir: str, pacs_url: str, fd: int) -> None:
    """Only the imaging routes, behind an authentication backend that needs no database round trip.

    Isolates what the imaging code costs per frame from the session lookup every request pays in the full app.
    """
    import uvicorn
    from sqlmodel import select
    from starlette.applications import Starlette
    from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection

    from rcp.auth.models import User
    from rcp.auth.sessions import CurrentUser
    from rcp.db import Database
    from rcp.imaging import routes as imaging_routes
    from rcp.imaging.service import ImagingService

    settings = Settings(env="test", data_dir=Path(data_dir), pacs_url=pacs_url)
    db = Database(settings.database_url)
    async with db.session() as s:
        user = (await s.exec(select(User).where(User.username == "dr.radiologue"))).one()
    current = CurrentUser.of(user, via="token")

    class Fixed(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
            return AuthCredentials(["authenticated"]), current

    app = Starlette(
        routes=imaging_routes.routes, middleware=[Middleware(AuthenticationMiddleware, backend=Fixed())]
    )
    app.state.settings = settings
    app.state.db = db
    app.state.imaging = await ImagingService.open(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    await server.serve(sockets=[socket.socket(fileno=fd)])  # bound by the parent (tests.servers.ServerProcess)


class AppProcess:
    """The app in a child process, on a socket bound here and handed over as ``--fd=N``."""

    def __init__(self, data_dir: Path, pacs_url: str, mode: str = "serve") -> None:
        self.server = ServerProcess([sys.executable, __file__, mode, str(data_dir), pacs_url],
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.url = self.server.url

    def wait_ready(self, path: str = "/health") -> None:
        """Until ``GET path`` answers, whatever the status: the server is up."""
        self.server.ready = path
        self.server.start()

    def stop(self) -> None:
        self.server.close()


# --- the client (this process) --------------------------------------------------------------------------------


async def _prepare_database(data_dir: Path, study_uid: str) -> int:
    from sqlmodel import col, select

    from rcp.db import Database, migrate
    from rcp.demo import load_demo
    from rcp.scheduling.models import Case, Meeting, PatientIdentifier

    settings = Settings(env="test", data_dir=data_dir)
    await asyncio.to_thread(migrate, settings.database_url, "heads")
    db = Database(settings.database_url)
    try:
        await load_demo(db)
        async with db.session() as s:
            case = (
                await s.exec(
                    select(Case)
                    .join(PatientIdentifier, col(PatientIdentifier.patient_id) == col(Case.patient_id))
                    .join(Meeting, col(Meeting.id) == col(Case.meeting_id))
                    .where(PatientIdentifier.value == IPP, Meeting.status == "scheduled")
                )
            ).one()
            case.study_uids = [study_uid]
            s.add(case)
            assert case.id is not None
            return case.id
    finally:
        await db.close()


async def _login(url: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        base_url=url,
        timeout=120,
        limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
    )
    response = await client.post("/api/session", json={"username": "dr.radiologue", "password": PASSWORD})
    response.raise_for_status()
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


async def _first_image(
    client: httpx.AsyncClient,
    case_id: int,
    study_uid: str,
    series_uid: str,
    figures: dict[str, float],
    suffix: str,
) -> dict[str, Any]:
    """Opening a case's image: the case's studies, the series descriptor, the first frame (each timed)."""
    start = time.perf_counter()
    (await client.get(f"/api/cases/{case_id}/studies")).raise_for_status()
    listed = time.perf_counter()
    response = await client.get(f"/api/imaging/studies/{study_uid}/series/{series_uid}")
    response.raise_for_status()
    descriptor: dict[str, Any] = response.json()
    described = time.perf_counter()
    first = await client.get(descriptor["frames"][len(descriptor["frames"]) // 2]["url"])
    first.raise_for_status()
    done = time.perf_counter()
    figures[f"first_image_ms_{suffix}"] = (done - start) * 1000
    figures[f"first_image_studies_ms_{suffix}"] = (listed - start) * 1000
    figures[f"first_image_descriptor_ms_{suffix}"] = (described - listed) * 1000
    figures[f"first_image_frame_ms_{suffix}"] = (done - described) * 1000
    return descriptor


async def _raw_get(
    port: int, paths: list[str], headers: dict[str, str], connections: int = CONNECTIONS
) -> tuple[float, int]:
    """GET ``paths`` over ``connections`` keep-alive HTTP/1.1 connections with a minimal client.

    httpx costs about a millisecond of client CPU per request, which on two shared cores would measure the client,
    not the server; a browser's network stack is native. This reader does only what HTTP/1.1 needs.
    """
    queue = list(reversed(paths))
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    total = 0

    async def connection() -> None:
        nonlocal total
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                path = queue.pop()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                if status != 200:
                    raise RuntimeError(f"HTTP {status} for a frame: {body[:200]!r}")
                total += length
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return time.perf_counter() - start, total


def _cookie_header(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in client.cookies.items())}


async def _wadors_series(base: str, study_uid: str, series_uid: str) -> tuple[float, int]:
    async with httpx.AsyncClient(timeout=120) as client:
        start = time.perf_counter()
        response = await client.get(
            f"{base}/studies/{study_uid}/series/{series_uid}",
            headers={
                "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
            },
        )
        response.raise_for_status()
        return time.perf_counter() - start, len(response.content)


async def _service_layer_figures(
    settings: Settings, study_uid: str, series_uid: str, descriptor: dict[str, Any]
) -> dict[str, float]:
    from rcp.imaging.service import ImagingService

    service = await ImagingService.open(settings)
    try:
        frames = [(f["sop_uid"], f["frame"]) for f in descriptor["frames"]]
        # While a cold series is pulled, decoded and encoded, the event loop must stay responsive.
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append((time.perf_counter() - before - 0.005) * 1000)

        tick = asyncio.create_task(ticker())
        progress = service.prefetch("bench", [study_uid])
        await service.prefetcher.wait("bench")
        stop.set()
        await tick
        assert progress.state == "done", progress.errors
        lags.sort()
        rounds = 20
        start = time.perf_counter()
        for _ in range(rounds):
            for sop_uid, number in frames:
                await service.frame(study_uid, series_uid, sop_uid, number)
        elapsed = time.perf_counter() - start
        return {
            "cached_frames_per_s_service_layer": rounds * len(frames) / elapsed,
            "event_loop_lag_ms_p99_cold_series": lags[int(len(lags) * 0.99)] if lags else 0.0,
            "event_loop_lag_ms_max_cold_series": lags[-1] if lags else 0.0,
        }
    finally:
        await service.close()


def _codec_figures(blobs: list[bytes]) -> dict[str, float]:
    decode: list[float] = []
    encode: list[float] = []
    for blob in blobs[:: max(1, len(blobs) // 60)]:
        t0 = time.perf_counter()
        ds = pydicom.dcmread(io.BytesIO(blob))
        values = decode_frame(ds, 0)
        t1 = time.perf_counter()
        encode_frame(values)
        t2 = time.perf_counter()
        decode.append((t1 - t0) * 1000)
        encode.append((t2 - t1) * 1000)
    return {
        "decode_ms_per_slice": statistics.median(decode),
        "encode_ms_per_slice": statistics.median(encode),
    }


async def main() -> dict[str, float]:
    # The machine is shared: the load average says how much of it this run had.
    figures: dict[str, float] = {"machine_load_1min_at_start": os.getloadavg()[0]}
    orthanc = OrthancProcess()
    orthanc.start()
    work = Path(tempfile.mkdtemp(prefix="rcp-bench-imaging-"))
    try:
        patient = SyntheticPatient(IPP, ISSUER, "Lefèbvre", "Jean-Pierre", date(1956, 3, 14), "M")
        t0 = time.perf_counter()
        series = ct_series(patient, slices=SLICES)
        blobs = [to_part10(ds) for ds in series]
        print(f"generated {SLICES} slices in {time.perf_counter() - t0:.1f} s")
        study_uid, series_uid = str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID)
        pacs = DicomWebClient(orthanc.dicomweb_url)
        t0 = time.perf_counter()
        stored = await pacs.store(blobs)
        await pacs.close()
        assert len(stored.stored) == SLICES, stored.failed[:3]
        print(f"stored in Orthanc (STOW-RS) in {time.perf_counter() - t0:.1f} s")
        figures.update(_codec_figures(blobs))

        case_id = await _prepare_database(work, study_uid)
        wado_s, wado_bytes = await _wadors_series(orthanc.dicomweb_url, study_uid, series_uid)
        figures["series_s_wadors"] = wado_s

        # Cold: a fresh server, empty cache, nothing prefetched.
        app = AppProcess(work, orthanc.dicomweb_url)
        try:
            app.wait_ready()
            client = await _login(app.url)
            (await client.get("/api/session")).raise_for_status()  # the server has been up a while
            descriptor = await _first_image(client, case_id, study_uid, series_uid, figures, "cold")
            urls = [f["url"] for f in descriptor["frames"]]
            figures["series_s_service_cold"], _ = await _raw_get(app.port, urls, _cookie_header(client))
            await client.aclose()
        finally:
            app.stop()

        # Prefetched: another fresh server with an empty cache; the case is prefetched first.
        for folder in (work / "cache",):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        app = AppProcess(work, orthanc.dicomweb_url)
        try:
            app.wait_ready()
            client = await _login(app.url)
            t0 = time.perf_counter()
            (await client.post(f"/api/cases/{case_id}/prefetch")).raise_for_status()
            while True:
                progress = (await client.get(f"/api/cases/{case_id}/prefetch")).json()
                if progress["state"] != "running":
                    break
                await asyncio.sleep(0.05)
            figures["prefetch_s"] = time.perf_counter() - t0
            assert progress["state"] == "done", progress
            descriptor = await _first_image(client, case_id, study_uid, series_uid, figures, "prefetched")
            urls = [f["url"] for f in descriptor["frames"]]
            figures["series_s_service"], service_bytes = await _raw_get(
                app.port, urls, _cookie_header(client)
            )
            figures["series_bytes_ratio"] = service_bytes / wado_bytes
            figures["series_bytes_service"] = service_bytes
            figures["series_bytes_wadors"] = wado_bytes
            rounds = 5
            elapsed, _ = await _raw_get(app.port, urls * rounds, _cookie_header(client))
            figures["cached_frames_per_s_http"] = rounds * len(urls) / elapsed
            await client.aclose()
        finally:
            app.stop()

        # The imaging routes alone (no per-request session lookup), cache warm from the run above.
        app = AppProcess(work, orthanc.dicomweb_url, mode="serve-imaging")
        try:
            app.wait_ready("/api/imaging/frames/1/1/1/1")
            paths = [f["url"] for f in descriptor["frames"]]
            await _raw_get(app.port, paths, {})  # the disk cache into memory
            elapsed, _ = await _raw_get(app.port, paths * 5, {})
            figures["cached_frames_per_s"] = 5 * len(paths) / elapsed
        finally:
            app.stop()

        settings = Settings(env="test", data_dir=work / "layer", pacs_url=orthanc.dicomweb_url)
        figures.update(await _service_layer_figures(settings, study_uid, series_uid, descriptor))
    finally:
        orthanc.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    figures["machine_load_1min_at_end"] = os.getloadavg()[0]
    return figures


def report(figures: dict[str, float]) -> None:
    goals = {
        "first_image_ms_prefetched": ("< 300", lambda v: v < 300),
        "series_bytes_ratio": ("<= 0.40", lambda v: v <= 0.4),
        "cached_frames_per_s": (">= 1000", lambda v: v >= 1000),
    }
    print(f"\n{'figure':<30} {'value':>14}  goal")
    for name, value in figures.items():
        goal, ok = goals.get(name, ("", None))
        mark = "" if ok is None else ("ok" if ok(value) else "MISSED")
        shown = f"{value:,.0f}" if value >= 1000 else f"{value:.3f}"
        print(f"{name:<30} {shown:>14}  {goal} {mark}")
    out = ROOT / "bench" / "results" / "imaging.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": {k: round(v, 4) for k, v in figures.items()}}, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        asyncio.run(_serve(sys.argv[2], sys.argv[3], int(sys.argv[4].removeprefix("--fd="))))
    elif len(sys.argv) == 5 and sys.argv[1] == "serve-imaging":
        asyncio.run(_serve_imaging_only(sys.argv[2], sys.argv[3], int(sys.argv[4].removeprefix("--fd="))))
    else:
        report(asyncio.run(main()))
