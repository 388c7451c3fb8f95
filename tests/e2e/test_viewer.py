"""End-to-end tests of the imaging viewer in headless Chromium, against the real app and its imaging routes.

The series are synthetic DICOM files in the app's own archive (tests/e2e/viewer_case.py), attached to a case of a
scheduled meeting; the coordinator who owns the case is signed in, opens the case page and its viewer, and every
frame comes through ``GET /api/imaging/frames/...`` in the contract's wire format (``rcp.imaging.frames``). The tests
drive the viewer as a user would (wheel, keys, mouse drags, toolbar buttons) or as the live room does (setState),
and read back canvas pixels at known image positions: a region of known Hounsfield units must show the grey level
the DICOM window function gives (PS3.3 C.11.2.1.2.1). No wall-clock assertions: waits only bound how long a test
may hang.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from playwright.async_api import Page

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.frames import encode_frame
from rcp.imaging.synthetic import LUNG, TUMOUR
from tests.e2e.viewer_case import (
    CT_MARKER_BOX,
    CT_PATCHES,
    CT_SIZE,
    CT_SLICES,
    RGB_BARS,
    PacsSwitch,
    ViewerCase,
    new_viewer_case,
    slice_marker,
    store_flaky_series,
)
from tests.fixtures.browser import NewPage
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 20_000
#: The viewer on the case page (web/templates/imaging/case_studies.html).
V = "#case-viewer"


@dataclass(frozen=True)
class Site:
    """The app serving the viewer's case, and the switch that takes its PACS down."""

    base_url: str
    case: ViewerCase
    pacs: PacsSwitch

    def url(self, name: str) -> str:
        return self.case.url(name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def site(settings: Settings, db: Database) -> AsyncIterator[Site]:
    """The whole app on loopback, its archive behind a ``PacsSwitch``, and a case whose studies are the series."""
    app = create_app(settings)
    with ServerThread(app) as server:
        pacs = PacsSwitch(app.state.imaging.archive)
        app.state.imaging.archive = pacs
        yield Site(server.url, await new_viewer_case(server.url, settings, db), pacs)


def linear_grey(x: float, center: float, width: float) -> int:
    """DICOM linear VOI function (PS3.3 C.11.2.1.2.1), as the viewer must apply it to integer data."""
    c = center - 0.5
    half = (max(1.0, width) - 1) / 2
    if x <= c - half:
        return 0
    if x > c + half:
        return 255
    return int(((x - c) / (max(1.0, width) - 1) + 0.5) * 255 + 0.5)


def box_centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    """Image coordinates (x = column, y = row) of the centre of a (row0, row1, col0, col1) region."""
    r0, r1, c0, c1 = box
    return (c0 + c1) / 2, (r0 + r1) / 2


async def open_case(page: Page, site: Site) -> None:
    """The signed-in coordinator on the case page; ``window.viewer`` is its viewer, user changes logged."""
    await page.context.add_cookies(site.case.cookies)  # type: ignore[arg-type]
    await page.goto(f"{site.base_url}/cases/{site.case.case_id}")
    await page.evaluate("window.caseImagingReady")
    await page.evaluate(
        """() => { window.viewer = window.caseViewer; window.viewerChanges = [];
                   viewer.onChange((state, info) => window.viewerChanges.push(info.reason)); }"""
    )
    await page.locator(V).scroll_into_view_if_needed()


async def open_viewer(page: Page, site: Site, *names: str, layout: str | None = None) -> None:
    await open_case(page, site)
    if layout:
        await page.evaluate(f"viewer.setLayout({json.dumps(layout)})")
    urls = [site.url(n) for n in names]
    await page.evaluate(f"Promise.all({json.dumps(urls)}.map((url, i) => viewer.loadSeries(i, url)))")
    await page.evaluate("viewer.settled()")
    await page.locator(V).scroll_into_view_if_needed()


async def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("viewer.getState()")
    return result


async def pixel(page: Page, viewport: int, x: float, y: float) -> list[int]:
    """RGBA on viewport's image canvas at image point (x, y), after the viewer has drawn its state."""
    await page.evaluate("viewer.settled()")
    rgba: list[int] = await page.evaluate(
        """([i, x, y]) => {
            const p = viewer.imageToScreen(x, y, i);
            const canvas = document.querySelector(`#case-viewer [data-viewport="${i}"] .rcp-vp__image`);
            const dpr = canvas.width / canvas.getBoundingClientRect().width;
            const d = canvas.getContext('2d').getImageData(Math.floor(p.x * dpr), Math.floor(p.y * dpr), 1, 1).data;
            return Array.from(d);
        }""",
        [viewport, x, y],
    )
    return rgba


async def grey(page: Page, viewport: int, x: float, y: float) -> int:
    r, g, b, a = await pixel(page, viewport, x, y)
    assert a == 255 and r == g == b, f"expected an opaque grey pixel, got {(r, g, b, a)}"
    return r


async def corner(page: Page, viewport: int, name: str) -> str:
    text: str = await page.inner_text(f'{V} [data-viewport="{viewport}"] .rcp-vp__text--{name}')
    return text


async def wait_index(page: Page, viewport: int, index: int) -> None:
    # Waits take a function: the page's CSP (no 'unsafe-eval') refuses a polled string expression.
    await page.wait_for_function(
        f"() => viewer.getState().viewports[{viewport}].index === {index}", timeout=TIMEOUT_MS
    )


async def viewport_centre(page: Page, viewport: int) -> tuple[float, float]:
    box = await page.locator(f'{V} [data-viewport="{viewport}"]').bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def test_ct_opens_with_its_window_and_known_hu_show_expected_grey(
    new_page: NewPage, site: Site
) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    vp = (await state(page))["viewports"][0]
    assert vp["index"] == 0
    assert vp["window"] == {"center": 40, "width": 400}
    assert vp["pan"] == {"x": 128, "y": 128}
    for hu, box in CT_PATCHES:
        assert abs(await grey(page, 0, *box_centre(box)) - linear_grey(hu, 40, 400)) <= 1, hu
    assert "2026-09-15" in await corner(page, 0, "tl")
    assert "CT THORAX C+" in await corner(page, 0, "tl")
    tr = await corner(page, 0, "tr")
    assert f"Im 1/{CT_SLICES}" in tr and f"Pos {site.case.series['ct'].position_mm(0):.1f} mm" in tr
    assert "C 40  W 400" in await corner(page, 0, "bl")
    assert "Zoom 100%" in await corner(page, 0, "br")


async def test_scroll_by_wheel_keys_and_scrollbar_shows_that_slice(
    new_page: NewPage, site: Site
) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    await page.click(f'{V} [data-viewer-action="preset"][data-value="lung"]')
    marker = box_centre(CT_MARKER_BOX)
    assert await grey(page, 0, *marker) == linear_grey(slice_marker(0), -600, 1500)

    x, y = await viewport_centre(page, 0)
    await page.mouse.move(x, y)
    for _ in range(5):
        await page.mouse.wheel(0, 100)
    await wait_index(page, 0, 5)
    for _ in range(3):
        await page.keyboard.press("ArrowDown")
    await wait_index(page, 0, 8)
    await page.keyboard.press("PageDown")
    await wait_index(page, 0, 20)
    await page.keyboard.press("ArrowUp")
    await wait_index(page, 0, 19)
    await page.mouse.wheel(0, -100)
    await wait_index(page, 0, 18)

    assert abs(await grey(page, 0, *marker) - linear_grey(slice_marker(18), -600, 1500)) <= 1
    assert f"Im 19/{CT_SLICES}" in await corner(page, 0, "tr")
    assert f"Pos {site.case.series['ct'].position_mm(18):.1f} mm" in await corner(page, 0, "tr")

    # The scrollbar: a click at the bottom of the track goes to the last slice.
    track = await page.locator(f'{V} [data-viewport="0"] .rcp-vp__scroll').bounding_box()
    assert track is not None
    await page.mouse.click(track["x"] + track["width"] / 2, track["y"] + track["height"] - 1)
    await wait_index(page, 0, 119)
    await page.keyboard.press("Home")
    await wait_index(page, 0, 0)
    changes = await page.evaluate("window.viewerChanges")
    assert "slice" in changes and "window" in changes


async def test_window_by_preset_and_by_drag_changes_pixels_as_the_window_says(
    new_page: NewPage, site: Site
) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    patches = {hu: box_centre(box) for hu, box in CT_PATCHES}

    for key, (c, w) in {"lung": (-600, 1500), "bone": (400, 1800), "brain": (40, 80)}.items():
        await page.click(f'{V} [data-viewer-action="preset"][data-value="{key}"]')
        assert (await state(page))["viewports"][0]["window"] == {"center": c, "width": w}
        for hu in (-800, -100, 40, 80, 1000):
            assert abs(await grey(page, 0, *patches[hu]) - linear_grey(hu, c, w)) <= 1, (key, hu)
    assert await page.get_attribute(f'{V} [data-value="brain"]', "aria-pressed") == "true"

    # Right-button drag: always window/level, whatever the left-button tool.
    await page.click(f'{V} [data-viewer-action="tool"][data-value="pan"]')
    x, y = await viewport_centre(page, 0)
    await page.mouse.move(x, y)
    await page.mouse.down(button="right")
    await page.mouse.move(x + 120, y + 60, steps=6)
    await page.mouse.up(button="right")
    after = (await state(page))["viewports"][0]["window"]
    assert after["width"] > 80 and after["center"] > 40
    for hu in (-100, 40, 80, 200):
        expected = linear_grey(hu, after["center"], after["width"])
        assert abs(await grey(page, 0, *patches[hu]) - expected) <= 1, hu

    # Left-button drag with the W/L tool; dragging left narrows the window.
    await page.click(f'{V} [data-viewer-action="tool"][data-value="window"]')
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x - 40, y, steps=4)
    await page.mouse.up()
    narrowed = (await state(page))["viewports"][0]["window"]
    assert narrowed["width"] < after["width"]
    expected = linear_grey(40, narrowed["center"], narrowed["width"])
    assert abs(await grey(page, 0, *patches[40]) - expected) <= 1


async def test_layout_1x2_compares_prior_and_current(new_page: NewPage, site: Site) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct_prior", "ct", layout="1x2")
    s = await state(page)
    assert s["layout"] == "1x2"
    assert s["viewports"][0]["studyUid"] != s["viewports"][1]["studyUid"]
    # The phantom's lesion (rcp.imaging.synthetic: right lung, 80 mm right of the centre, at 72 % of the stack's
    # height) grew from 8 to 14 mm in radius: 10.5 mm from its centre the current study shows tumour and the prior
    # lung, on the same slice of both.
    k = round(0.72 * CT_SLICES)
    row, column = CT_SIZE // 2, 83
    current, prior = site.case.series["ct"], site.case.series["ct_prior"]
    assert (current.hu(k, row, column), prior.hu(k, row, column)) == (TUMOUR, LUNG)
    for i in (0, 1):
        await page.evaluate(f"viewer.scrollTo({k}, {i})")
    await page.evaluate("viewer.settled()")
    assert abs(await grey(page, 1, column + 0.5, row + 0.5) - linear_grey(TUMOUR, 40, 400)) <= 1
    assert await grey(page, 0, column + 0.5, row + 0.5) == linear_grey(LUNG, 40, 400)
    assert "2026-06-10" in await corner(page, 0, "tl")
    assert "2026-09-15" in await corner(page, 1, "tl")
    boxes = [await page.locator(f'{V} [data-viewport="{i}"]').bounding_box() for i in (0, 1)]
    widths = [b["width"] if b else 0.0 for b in boxes]
    whole = await page.locator(V).bounding_box()
    assert whole is not None
    # Side by side, each about half the viewer (the gutter and borders take a few pixels).
    assert abs(widths[0] - widths[1]) <= 2 and widths[0] > 0.45 * whole["width"]

    await page.click(f'{V} [data-viewer-action="layout"][data-value="2x2"]')
    await page.wait_for_function("() => viewer.getState().layout === '2x2'", timeout=TIMEOUT_MS)
    await page.evaluate("viewer.settled()")
    assert await page.locator(f"{V} .rcp-vp:not([hidden])").count() == 4
    await page.click(f'{V} [data-viewer-action="layout"][data-value="1x1"]')
    await page.evaluate("viewer.settled()")
    assert await page.locator(f"{V} .rcp-vp:not([hidden])").count() == 1


async def test_set_state_from_outside_renders_slice_window_zoom_and_pan(
    new_page: NewPage, site: Site
) -> None:
    page = await new_page()
    await open_case(page, site)
    ct = site.case.series["ct"]
    given: dict[str, Any] = {
        "layout": "1x1",
        "active": 0,
        "viewports": [
            {
                "studyUid": ct.study_uid,
                "seriesUid": ct.series_uid,
                "index": 40,
                "window": {"center": -600, "width": 1500},
                "zoom": 1.5,
                "pan": {"x": 60, "y": 60},
                "invert": False,
            }
        ],
    }
    shown = await page.evaluate(f"viewer.setState({json.dumps(given)})")
    vp = shown["viewports"][0]
    assert (vp["index"], vp["window"], vp["zoom"], vp["pan"]) == (
        40,
        given["viewports"][0]["window"],
        1.5,
        {"x": 60, "y": 60},
    )
    assert await page.evaluate("window.viewerChanges") == []  # setState is not a user change

    assert (
        abs(await grey(page, 0, *box_centre(CT_MARKER_BOX)) - linear_grey(slice_marker(40), -600, 1500)) <= 1
    )
    assert f"Im 41/{CT_SLICES}" in await corner(page, 0, "tr")
    assert "Zoom 150%" in await corner(page, 0, "br")
    box = await page.locator(f'{V} [data-viewport="0"]').bounding_box()
    assert box is not None
    centre = await page.evaluate("viewer.imageToScreen(60, 60, 0)")
    assert abs(centre["x"] - box["width"] / 2) < 0.01 and abs(centre["y"] - box["height"] / 2) < 0.01
    right = await page.evaluate("viewer.imageToScreen(70, 60, 0)")
    fit = min(box["width"], box["height"]) / CT_SIZE
    assert abs((right["x"] - centre["x"]) - 10 * fit * 1.5) < 0.01

    # The same state again with another slice and the viewer follows, window kept.
    given["viewports"][0]["index"] = 41
    await page.evaluate(f"viewer.setState({json.dumps(given)})")
    assert (
        abs(await grey(page, 0, *box_centre(CT_MARKER_BOX)) - linear_grey(slice_marker(41), -600, 1500)) <= 1
    )


@pytest.mark.parametrize(("size", "dpr"), [((1280, 720), 1), ((1920, 1080), 2)], ids=["1280x720", "4k"])
async def test_screen_and_image_coordinates_agree(
    new_page: NewPage, site: Site, size: tuple[int, int], dpr: int
) -> None:
    page = await new_page(size, device_scale_factor=dpr)
    await open_viewer(page, site, "ct")
    sizes = await page.evaluate(
        """() => ['marks', 'image'].map((layer) => {
                   const c = document.querySelector(`#case-viewer [data-viewport="0"] .rcp-vp__${layer}`);
                   const r = c.getBoundingClientRect(); return [c.width, c.height, r.width, r.height]; })"""
    )
    marks, image = sizes
    # Overlays (text, lengths, pointer) at full devicePixelRatio; the image layer at least at CSS resolution.
    assert marks[0] == round(marks[2] * dpr) and marks[1] == round(marks[3] * dpr)
    assert image[0] >= round(image[2]) and image[1] >= round(image[3])
    await page.evaluate(
        "viewer.setState({...viewer.getState(), viewports: [{...viewer.getState().viewports[0],"
        " zoom: 1.3, pan: {x: 128, y: 200}}]})"
    )
    for x, y in [(0, 0), (256, 256), (12.5, 200.25), (128, 64)]:
        back = await page.evaluate(
            f"(() => {{ const s = viewer.imageToScreen({x}, {y}, 0);"
            " return viewer.screenToImage(s.x, s.y, 0); })()"
        )
        assert abs(back["x"] - x) < 1e-6 and abs(back["y"] - y) < 1e-6
    # A client point maps to the same image point the pixels show: read the canvas there.
    hu, patch = CT_PATCHES[7]
    px, py = box_centre(patch)
    client = await page.evaluate(f"viewer.imageToClient({px}, {py}, 0)")
    hit = await page.evaluate(f"viewer.clientToImage({client['x']}, {client['y']})")
    assert hit["viewport"] == 0 and abs(hit["x"] - px) < 1e-6 and abs(hit["y"] - py) < 1e-6
    assert abs(await grey(page, 0, px, py) - linear_grey(hu, 40, 400)) <= 1


async def test_a_failing_series_says_why_and_the_rest_keeps_working(
    new_page: NewPage, site: Site, settings: Settings, db: Database
) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct", "broken", layout="1x2")
    message = page.locator(f'{V} [data-viewport="1"] .rcp-vp__message')
    await message.wait_for(state="visible", timeout=TIMEOUT_MS)
    # The server's own refusal (rcp.imaging.service: a transfer syntax no decoder handles), named by series.
    assert "series 3: This image cannot be shown: unsupported transfer syntax MPEG2" in await message.inner_text()
    assert await page.locator(f'{V} [data-viewport="0"] .rcp-vp__message').is_hidden()

    x, y = await viewport_centre(page, 0)
    await page.mouse.click(x, y)
    await page.keyboard.press("ArrowDown")
    await wait_index(page, 0, 1)

    # A PACS outage is shown as such, retried, and the series appears when the PACS is back. The series is new to
    # the server (its own study, not yet attached: opened through the case), so nothing of it is in the cache.
    flaky = await store_flaky_series(site.case, settings, db)
    site.pacs.down.add(flaky.series_uid)
    try:
        await page.evaluate(f"void viewer.loadSeries(1, {json.dumps(flaky.url)})")
        outage = page.locator(f'{V} [data-viewport="1"] .rcp-vp__message.is-transient')
        await outage.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert "PACS unreachable, retrying" in await outage.inner_text()
        await page.keyboard.press("ArrowDown")
        await wait_index(page, 0, 2)
    finally:
        site.pacs.down.discard(flaky.series_uid)
    await page.wait_for_function(
        "() => document.querySelector('#case-viewer [data-viewport=\"1\"]').dataset.drawn === 'true'",
        timeout=TIMEOUT_MS,
    )
    await page.locator(f'{V} [data-viewport="1"] .rcp-vp__message').wait_for(state="hidden", timeout=TIMEOUT_MS)
    assert await grey(page, 1, 32.5, 32.5) == linear_grey(flaky.hu(0, 32, 32), 40, 400)


async def test_length_measurement_is_in_millimetres_in_image_coordinates(
    new_page: NewPage, site: Site
) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    await page.click(f'{V} [data-viewer-action="tool"][data-value="measure"]')
    a = await page.evaluate("viewer.imageToClient(50, 128, 0)")
    b = await page.evaluate("viewer.imageToClient(146, 128, 0)")
    await page.mouse.move(a["x"], a["y"])
    await page.mouse.down()
    await page.mouse.move(b["x"], b["y"], steps=5)
    await page.mouse.up()
    ms = (await state(page))["viewports"][0]["measurements"]
    assert len(ms) == 1 and ms[0]["index"] == 0
    # The spacing the server sent is the series' Pixel Spacing (400 mm / 256 columns): 96 pixels are 150 mm.
    spacing = await page.evaluate(f"viewer.pool.series.get({json.dumps(site.url('ct'))}).frames[0].pixel_spacing")
    assert spacing == [float(v) for v in site.case.series["ct"].datasets[0].PixelSpacing] == [1.5625, 1.5625]
    length = await page.evaluate(
        """async ([m, s]) => (await import('/static/js/viewer-overlay.js')).formatLength(m.a, m.b, s)""",
        [ms[0], spacing],
    )
    assert length == "150.0 mm"

    # Zooming does not move the measurement on the anatomy: its ends stay at the same image points.
    x, y = await viewport_centre(page, 0)
    await page.mouse.move(x, y)
    await page.keyboard.down("Control")
    await page.mouse.wheel(0, -300)
    await page.keyboard.up("Control")
    await page.wait_for_function("() => viewer.getState().viewports[0].zoom > 1", timeout=TIMEOUT_MS)
    assert (await state(page))["viewports"][0]["measurements"] == ms
    await page.keyboard.press("Delete")
    assert (await state(page))["viewports"][0]["measurements"] == []


async def test_zoom_pan_fit_invert_reset(new_page: NewPage, site: Site) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    _, patch = CT_PATCHES[5]
    px, py = box_centre(patch)
    normal = await grey(page, 0, px, py)
    await page.click(f'{V} [data-viewer-action="invert"]')
    assert abs(await grey(page, 0, px, py) - (255 - normal)) <= 1
    await page.click(f'{V} [data-viewer-action="zoom-in"]')
    await page.click(f'{V} [data-viewer-action="zoom-in"]')
    assert abs((await state(page))["viewports"][0]["zoom"] - 1.5625) < 1e-9

    await page.click(f'{V} [data-viewer-action="tool"][data-value="pan"]')
    x, y = await viewport_centre(page, 0)
    before = (await state(page))["viewports"][0]["pan"]
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + 50, y - 30, steps=5)
    await page.mouse.up()
    after = (await state(page))["viewports"][0]["pan"]
    assert after["x"] < before["x"] and after["y"] > before["y"]
    # The image point that was at the viewport centre moved with the pointer.
    moved = await page.evaluate(f"viewer.imageToScreen({before['x']}, {before['y']}, 0)")
    box = await page.locator(f'{V} [data-viewport="0"]').bounding_box()
    assert box is not None
    assert (
        abs(moved["x"] - (box["width"] / 2 + 50)) < 0.5 and abs(moved["y"] - (box["height"] / 2 - 30)) < 0.5
    )
    # The body centre (soft tissue on the first slice), inverted, where the pan put it.
    centre_hu = site.case.series["ct"].hu(0, 128, 128)
    assert abs(await grey(page, 0, 128.5, 128.5) - (255 - linear_grey(centre_hu, 40, 400))) <= 1

    await page.click(f'{V} [data-viewer-action="fit"]')
    vp = (await state(page))["viewports"][0]
    assert vp["zoom"] == 1 and vp["pan"] == {"x": 128, "y": 128}
    await page.click(f'{V} [data-viewer-action="preset"][data-value="lung"]')
    await page.click(f'{V} [data-viewer-action="reset"]')
    vp = (await state(page))["viewports"][0]
    assert vp["invert"] is False and vp["window"] == {"center": 40, "width": 400}
    assert await grey(page, 0, px, py) == normal


async def test_float_rgb_and_monochrome1_series(new_page: NewPage, site: Site) -> None:
    page = await new_page()
    await open_viewer(page, site, "pet", "rgb", "mono1", layout="2x2")
    # float32 PET: LINEAR_EXACT window (PS3.3 C.11.2.1.3.2); body is 0.8 SUV far from the lesion.
    s = await state(page)
    s["viewports"][0]["window"] = {"center": 4, "width": 8}
    await page.evaluate(f"viewer.setState({json.dumps(s)})")
    suv = site.case.series["pet"].value(0, 64, 100)
    assert abs(suv - 0.8) < 1e-3
    assert abs(await grey(page, 0, 100.5, 64.5) - round((suv - 4) / 8 * 255 + 127.5)) <= 1
    # RGB: colours pass through unchanged.
    for j, colour in enumerate(RGB_BARS):
        r, g, b, _ = await pixel(page, 1, 16 * j + 8, 50)
        assert max(abs(r - colour[0]), abs(g - colour[1]), abs(b - colour[2])) <= 1, j
    # MONOCHROME1: low values are white (PS3.3 C.7.6.3.1.2); the ramp's first column is 0.
    assert await grey(page, 2, 0.5, 64) == 255
    assert await grey(page, 2, 127.5, 64) == 0


async def test_whole_series_prefetches_and_cine_plays(new_page: NewPage, site: Site) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    await page.locator(f'{V} [data-viewport="0"] .rcp-vp__progress').wait_for(state="hidden", timeout=TIMEOUT_MS)
    loaded = await page.evaluate(f"viewer.pool.series.get({json.dumps(site.url('ct'))}).loaded")
    assert loaded == CT_SLICES
    cine = f'{V} [data-viewer-action="cine"]'
    await page.fill(f'{V} [data-viewer-action="fps"]', "30")
    await page.click(cine)
    assert await page.get_attribute(cine, "aria-pressed") == "true"
    await page.wait_for_function("() => viewer.getState().viewports[0].index >= 5", timeout=TIMEOUT_MS)
    await page.click(cine)
    # Stopped, by the viewer's own state (no more animation-frame ticks) and the button the user sees; then the
    # next step is the user's: one slice down from where cine stopped, exactly.
    assert await page.evaluate("viewer.cine.playing") is False
    assert await page.get_attribute(cine, "aria-pressed") == "false"
    stopped = (await state(page))["viewports"][0]["index"]
    await page.keyboard.press("ArrowDown")
    await wait_index(page, 0, (stopped + 1) % CT_SLICES)


async def test_screenshot_looks_like_a_reading_room(new_page: NewPage, site: Site) -> None:
    page = await new_page((1280, 720))
    await open_viewer(page, site, "ct_prior", "ct", "pet", "broken", layout="2x2")
    for i in (0, 1):
        await page.evaluate(f"viewer.scrollTo(60, {i})")
    await page.evaluate("viewer.applyPreset('lung', 1)")
    await page.evaluate("viewer.settled()")
    await page.screenshot(path="/tmp/rcp-viewer-2x2.png")
    background = await page.evaluate(
        "getComputedStyle(document.querySelector('.rcp-viewer')).backgroundColor"
    )
    assert background == "rgb(11, 13, 16)"


async def test_frame_decoding_matches_the_wire_format_at_the_int16_limits(
    new_page: NewPage, site: Site
) -> None:
    """delta16 differences wrap modulo 2**16 (the contract): full-range noise, encoded by the server's own encoder
    (``rcp.imaging.frames.encode_frame``), must come back bit-exact from the browser's decoder."""
    page = await new_page()
    await open_case(page, site)
    rng = np.random.default_rng(7)
    values = rng.integers(-32768, 32768, size=(37, 53), dtype=np.int16)
    values[0, :4] = [-32768, 32767, -32768, 32767]
    floats = rng.normal(0, 1e6, size=(11, 13)).astype(np.float32)
    d16, f32 = encode_frame(values), encode_frame(floats)
    assert (d16.encoding, f32.encoding) == ("delta16-deflate", "float32-deflate")
    decoded = await page.evaluate(
        """async ([d16, f32, rows, cols, frows, fcols]) => {
            const f = await import('/static/js/frames.js');
            const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const a = f.decodeFrame('delta16-deflate', await f.inflate(bytes(d16)), {rows, columns: cols});
            const b = f.decodeFrame('float32-deflate', await f.inflate(bytes(f32)), {rows: frows, columns: fcols});
            let bad = null;
            try { f.decodeFrame('delta16-deflate', new Uint8Array(10), {rows, columns: cols}); }
            catch (err) { bad = err.message; }
            return {a: Array.from(a.pixels), min: a.min, max: a.max, b: Array.from(b.pixels), bad};
        }""",
        [
            base64.b64encode(d16.body).decode(),
            base64.b64encode(f32.body).decode(),
            *values.shape,
            *floats.shape,
        ],
    )
    assert decoded["a"] == values.ravel().tolist()
    assert (decoded["min"], decoded["max"]) == (-32768, 32767)
    assert np.array_equal(np.array(decoded["b"], dtype=np.float32), floats.ravel())
    assert "expected" in decoded["bad"]


async def test_overlay_hook_and_pointer_coordinates_in_a_2x2_layout(
    new_page: NewPage, site: Site
) -> None:
    """What the live room's pointer needs: client point -> (viewport, image point) -> drawn on that anatomy."""
    page = await new_page()
    await open_viewer(page, site, "ct", "ct_prior", "pet", "rgb", layout="2x2")
    await page.evaluate(
        """void (window.removeOverlay = viewer.addOverlay((ctx, v) => {
            if (v.viewport !== 3) return;
            const p = v.imageToScreen(64, 48);
            ctx.fillStyle = 'rgb(255, 0, 128)';
            ctx.fillRect(p.x - 3, p.y - 3, 6, 6);
        }))"""
    )
    await page.evaluate("viewer.settled()")
    client = await page.evaluate("viewer.imageToClient(64, 48, 3)")
    hit = await page.evaluate(f"viewer.clientToImage({client['x']}, {client['y']})")
    assert hit["viewport"] == 3 and abs(hit["x"] - 64) < 1e-6 and abs(hit["y"] - 48) < 1e-6
    marks = await page.evaluate(
        """() => { const c = document.querySelector('#case-viewer [data-viewport="3"] .rcp-vp__marks');
                   const p = viewer.imageToScreen(64, 48, 3); const k = c.width / c.getBoundingClientRect().width;
                   return Array.from(c.getContext('2d').getImageData(Math.floor(p.x * k), Math.floor(p.y * k), 1, 1).data);
                 }"""
    )
    assert marks == [255, 0, 128, 255]
    # The pointer lands on the same image point whatever the viewport's zoom and pan.
    s = await state(page)
    s["viewports"][3].update({"zoom": 2.5, "pan": {"x": 70, "y": 40}})
    await page.evaluate(f"viewer.setState({json.dumps(s)})")
    client = await page.evaluate("viewer.imageToClient(64, 48, 3)")
    hit = await page.evaluate(f"viewer.clientToImage({client['x']}, {client['y']})")
    assert hit["viewport"] == 3 and abs(hit["x"] - 64) < 1e-6 and abs(hit["y"] - 48) < 1e-6
    await page.evaluate("window.removeOverlay(); viewer.settled()")
    await page.evaluate("new Promise(requestAnimationFrame)")

    # Clicking a viewport makes it active: a user change the room hears about.
    x, y = await viewport_centre(page, 2)
    await page.mouse.click(x, y)
    assert (await state(page))["active"] == 2
    assert "active" in await page.evaluate("window.viewerChanges")


async def test_linked_stacks_scroll_together_by_slice_position(
    new_page: NewPage, site: Site
) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct_prior", "ct", layout="1x2")
    await page.evaluate("viewer.scrollTo(50, 0); viewer.scrollTo(60, 1); viewer.setActive(0)")
    await page.click(f'{V} [data-viewer-action="link"]')
    assert await page.get_attribute(f'{V} [data-viewer-action="link"]', "aria-pressed") == "true"
    x, y = await viewport_centre(page, 0)
    await page.mouse.move(x, y)
    for _ in range(3):
        await page.mouse.wheel(0, 100)
    await wait_index(page, 0, 53)
    assert (await state(page))["viewports"][1]["index"] == 63
    x, y = await viewport_centre(page, 1)
    await page.mouse.move(x, y)
    await page.mouse.wheel(0, -100)
    await wait_index(page, 1, 62)
    assert (await state(page))["viewports"][0]["index"] == 52
    # Both viewports show the slice their state names.
    marker = box_centre(CT_MARKER_BOX)
    await page.evaluate("viewer.applyPreset('lung', 0); viewer.applyPreset('lung', 1)")
    assert abs(await grey(page, 0, *marker) - linear_grey(slice_marker(52), -600, 1500)) <= 1
    assert abs(await grey(page, 1, *marker) - linear_grey(slice_marker(62), -600, 1500)) <= 1


async def test_memory_budget_forgets_series_no_viewport_shows(
    new_page: NewPage, site: Site
) -> None:
    """A long meeting opens series after series: decoded pixels stay within the pool's budget."""
    page = await new_page()
    await open_case(page, site)
    budget = 40 * 256 * 256 * 2  # 40 CT slices
    await page.evaluate(f"viewer.pool.budget = {budget}")
    ct, prior = site.url("ct"), site.url("ct_prior")
    await page.evaluate(f"viewer.loadSeries(0, {json.dumps(ct)})")
    await page.wait_for_function("() => !viewer.pool.inflight", timeout=TIMEOUT_MS)
    loaded = await page.evaluate(f"viewer.pool.series.get({json.dumps(ct)}).loaded")
    assert 40 <= loaded < 120  # prefetch paused at the budget (plus the requests already in flight)
    await page.evaluate("viewer.scrollTo(110, 0)")  # a displayed frame is fetched whatever the budget
    await page.evaluate("viewer.settled()")
    assert abs(await grey(page, 0, *box_centre(CT_PATCHES[4][1])) - linear_grey(40, 40, 400)) <= 1

    await page.evaluate(f"viewer.loadSeries(0, {json.dumps(prior)})")
    await page.wait_for_function("() => !viewer.pool.inflight", timeout=TIMEOUT_MS)
    assert await page.evaluate(f"viewer.pool.series.get({json.dumps(ct)}).loaded") == 0
    used = await page.evaluate("viewer.pool.used")
    assert used <= budget + 6 * 256 * 256 * 2


async def test_unknown_series_says_so_in_its_viewport(new_page: NewPage, site: Site) -> None:
    page = await new_page()
    await open_viewer(page, site, "ct")
    result = await page.evaluate("viewer.loadSeries(0, '/api/imaging/studies/1.2.3/series/4.5.6')")
    assert result is None
    message = page.locator(f'{V} [data-viewport="0"] .rcp-vp__message')
    await message.wait_for(state="visible", timeout=TIMEOUT_MS)
    # The server's answer for a study that is none of this user's patients' (rcp.imaging.routes).
    assert await message.inner_text() == "No such study among your patients."
    assert (await state(page))["viewports"][0]["seriesUid"] is None
    # Opening a good series again replaces the error.
    await page.evaluate(f"viewer.loadSeries(0, {json.dumps(site.url('ct'))})")
    assert await message.is_hidden()
    assert abs(await grey(page, 0, *box_centre(CT_PATCHES[4][1])) - linear_grey(40, 40, 400)) <= 1
