"""Browser viewer benchmark: a 300-slice 512x512 CT in headless Chromium, from first image to smooth scrolling.

The whole app (SQLite and the local archive in a temporary folder, a case made by tests.factories) serves a noisy 300-slice CT
(rcp.imaging.synthetic) attached to a case, through its real imaging routes, frames already in its cache (the
attach starts the prefetch; the benchmark waits for it); the coordinator signs in, and the case page's viewer
(web/static/js/viewer.js) loads the series in a fresh browser context and the page measures itself with
performance.now():

- ``first_image_ms``: loadSeries() call to the first slice drawn (metadata + one frame + paint);
- ``series_s`` / ``series_frames_per_s``: until all 300 frames are decoded in the browser (6 requests in flight);
- ``series_mb`` / ``bytes_per_frame``: bytes on the wire (Resource Timing encodedBodySize) vs ``raw_mb`` (int16);
- ``decode_ms_per_frame``: inflate (DecompressionStream) + delta16 undo of one 512x512 frame;
- ``scroll_ms_per_slice_*``: one slice step rendered (64k-LUT paint + scaled draw + flush), 1280x720 and 4K (DPR 2);
- ``window_ms_per_step_4k``: one window/level drag step (LUT rebuild + paint + draw) at 4K.
Smooth scrolling needs a slice step well under 16.7 ms (60 Hz). Per-step figures are medians (p95 beside them);
``load_average_1min`` records how busy the shared machine was, since other work inflates every figure.

    .venv/bin/python bench/viewer.py        # about a minute; writes bench/results/viewer.json
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, async_playwright

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.imaging.synthetic import ct_series
from tests.conftest import sign_in
from tests.e2e.viewer_case import attach, new_case, series_of, session_cookies, store
from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS
from tests.servers import ServerThread, until

SLICES, SIZE = 300, 512

LOAD_JS = """async (url) => {
  const v = window.viewer;
  const t0 = performance.now();
  await v.loadSeries(0, url);
  const first = performance.now() - t0;
  const s = v.pool.series.get(url);
  await new Promise((resolve) => { const check = () => s.complete ? resolve() : setTimeout(check, 2); check(); });
  const all = performance.now() - t0;
  const bytes = performance.getEntriesByType('resource').filter((e) => e.name.includes('/frames/'))
    .reduce((sum, e) => sum + e.encodedBodySize, 0);
  return {first, all, bytes, count: s.length};
}"""

DECODE_JS = """async (url) => {
  const f = await import('/static/js/frames.js');
  const meta = await (await fetch(url)).json();
  const frame = meta.frames[150];
  const body = await (await fetch(frame.url)).arrayBuffer();
  const times = [];
  for (let i = 0; i < 40; i++) {
    const t = performance.now();
    f.decodeFrame('delta16-deflate', await f.inflate(new Uint8Array(body)), frame);
    times.push(performance.now() - t);
  }
  return times;
}"""

SCROLL_JS = """() => {
  const v = window.viewer;
  const canvas = document.querySelector('#case-viewer [data-viewport="0"] .rcp-vp__image');
  const ctx = canvas.getContext('2d');
  const n = v.pool.series.values().next().value.length;
  const times = [];
  for (let k = 0; k < n; k++) {
    v.scrollTo(k, 0);
    const t = performance.now();
    v.render();
    ctx.getImageData(0, 0, 1, 1);  // flush the canvas: count the raster, not just the recording
    times.push(performance.now() - t);
  }
  return times;
}"""

WINDOW_JS = """() => {
  const v = window.viewer;
  const canvas = document.querySelector('#case-viewer [data-viewport="0"] .rcp-vp__image');
  const ctx = canvas.getContext('2d');
  const times = [];
  for (let k = 0; k < 100; k++) {
    v.updateViewport(0, {window: {center: 40 + k, width: 400 + 3 * k}}, 'window');
    const t = performance.now();
    v.render();
    ctx.getImageData(0, 0, 1, 1);
    times.push(performance.now() - t);
  }
  return times;
}"""


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


@dataclass(frozen=True)
class Served:
    base_url: str
    case_id: int
    series_url: str
    cookies: list[dict[str, Any]]


@asynccontextmanager
async def served_ct() -> AsyncIterator[Served]:
    """The app with a 300-slice CT attached to a new case, its frames in the cache."""
    with tempfile.TemporaryDirectory(prefix="rcp-bench-viewer-") as folder:
        settings = Settings(env="test", data_dir=Path(folder), secret_key=secrets.token_urlsafe(48),
                            default_locale="en", embedded_worker=False)
        migrate(settings.database_url)
        db = Database(settings.database_url)
        try:
            case_id, patient, user = await new_case(db, "Bancdessai")
            with ServerThread(create_app(settings)) as server:
                coordinator = await sign_in(server.url, user.username, user.password)
                try:
                    datasets = await asyncio.to_thread(ct_series, patient, slices=SLICES, rows=SIZE, columns=SIZE,
                                                       series_description="CT THORAX 1.25 mm")
                    await store(settings, db, datasets)
                    series = series_of(datasets)
                    await attach(coordinator, case_id, [series.study_uid])

                    async def prefetched() -> bool:  # the prefetch the attach started: every frame in the cache
                        progress = (await coordinator.get(f"/api/cases/{case_id}/prefetch")).json()
                        assert progress["state"] in ("running", "done"), progress
                        return bool(progress["state"] == "done")

                    await until(prefetched, "the series in the frame cache", timeout=300, interval=0.1)
                    yield Served(server.url, case_id, series.url, session_cookies(coordinator))
                finally:
                    await coordinator.http.aclose()
        finally:
            await db.close()


async def measure(browser: Browser, served: Served, size: tuple[int, int], dpr: int) -> dict[str, Any]:
    context = await browser.new_context(
        viewport={"width": size[0], "height": size[1]}, device_scale_factor=dpr
    )
    try:
        await context.add_cookies(served.cookies)  # type: ignore[arg-type]
        page = await context.new_page()
        await page.goto(f"{served.base_url}/cases/{served.case_id}")
        await page.evaluate("window.caseImagingReady")
        await page.evaluate("window.viewer = window.caseViewer")
        await page.locator("#case-viewer").scroll_into_view_if_needed()
        load: dict[str, Any] = await page.evaluate(LOAD_JS, served.series_url)
        scroll: list[float] = await page.evaluate(SCROLL_JS)
        window: list[float] = await page.evaluate(WINDOW_JS)
        decode: list[float] = await page.evaluate(DECODE_JS, served.series_url)
        return {"load": load, "scroll": scroll, "window": window, "decode": decode}
    finally:
        await context.close()


async def main() -> None:
    async with served_ct() as served, async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            hd = await measure(browser, served, (1280, 720), 1)
            uhd = await measure(browser, served, (1920, 1080), 2)
        finally:
            await browser.close()

    count = hd["load"]["count"]
    raw = count * SIZE * SIZE * 2
    figures = {
        "slices": count,
        "first_image_ms": round(statistics.median([hd["load"]["first"], uhd["load"]["first"]]), 1),
        "series_s": round(hd["load"]["all"] / 1000, 3),
        "series_frames_per_s": round(count / (hd["load"]["all"] / 1000), 1),
        "series_mb": round(hd["load"]["bytes"] / 1e6, 2),
        "raw_mb": round(raw / 1e6, 2),
        "bytes_ratio_vs_raw": round(hd["load"]["bytes"] / raw, 3),
        "bytes_per_frame": round(hd["load"]["bytes"] / count),
        "decode_ms_per_frame": round(statistics.median(hd["decode"]), 2),
        "scroll_ms_per_slice_720p": round(statistics.median(hd["scroll"]), 2),
        "scroll_ms_per_slice_720p_p95": round(p95(hd["scroll"]), 2),
        "scroll_ms_per_slice_4k": round(statistics.median(uhd["scroll"]), 2),
        "scroll_ms_per_slice_4k_p95": round(p95(uhd["scroll"]), 2),
        "window_ms_per_step_4k": round(statistics.median(uhd["window"]), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    width = max(len(k) for k in figures)
    print(f"viewer: {count}-slice 512x512 CT in headless Chromium (software raster, 2 shared cores)")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "viewer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
