"""End to end in headless Chromium: a coordinator prepares a case's images on the case page.

Against the real app (``live_server``): the coordinator signs in, opens a case whose patient has a prior and a
current synthetic CT in the archive, attaches the current study (the readiness checklist follows), opens the CT
series in the embedded viewer, scrolls to a thorax slice, applies window presets, and the canvas pixels at known
anatomy of the phantom (rcp.imaging.synthetic: left lung -850 HU, contrast aorta 195 HU) take the grey levels
the windows predict. Then prior and current side by side (1x2), where the lesion that grew between the studies
shows at its rim; and an import of a foreign patient's file (visible warning) and of a non-DICOM file (refused,
with the server's message). Screenshots at 1280x720 and 3840x2160 go to /tmp (RCP_SCREENSHOTS=0 turns them off).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import FilePayload, Page, expect

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from rcp.imaging.synthetic import SyntheticPatient, ct_series, to_part10
from tests.e2e.pages import sign_in
from tests.factories import MadeMeeting, MadeUser, make_meeting
from tests.imaging.cases import ImagingCase, new_imaging_case
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser]

SHOTS = os.environ.get("RCP_SCREENSHOTS", "1") != "0"
SLICES, SIZE = 40, 128
#: The phantom's geometry (rcp.imaging.synthetic.ct_series): a 400 mm field of view, slices 2.5 mm apart.
SPACING_MM = 400.0 / SIZE
THICKNESS_MM = 2.5


def image_point(x_mm: float, y_mm: float) -> tuple[float, float]:
    """Millimetres from the image centre to viewer image coordinates (column, row; pixel centres at +0.5)."""
    return x_mm / SPACING_MM + (SIZE - 1) / 2 + 0.5, y_mm / SPACING_MM + (SIZE - 1) / 2 + 0.5


def index_at(descriptor: dict[str, Any], t: float) -> int:
    """The viewer's slice index whose phantom height (0 at the pelvis, 1 at the thorax apex) is nearest ``t``."""
    z0 = -(SLICES - 1) * THICKNESS_MM
    heights = [(frame["position"][2] - z0) / (SLICES * THICKNESS_MM) for frame in descriptor["frames"]]
    return min(range(len(heights)), key=lambda i: abs(heights[i] - t))


async def grey(page: Page, viewport: int, x: float, y: float) -> int:
    """The grey level the viewer drew at image point (x, y) of a viewport, once it has drawn its state."""
    await page.evaluate("caseViewer.settled()")
    rgba: list[int] = await page.evaluate(
        """([i, x, y]) => {
            const p = caseViewer.imageToScreen(x, y, i);
            const canvas = document.querySelector(`#case-viewer [data-viewport="${i}"] .rcp-vp__image`);
            const dpr = canvas.width / canvas.getBoundingClientRect().width;
            const d = canvas.getContext('2d').getImageData(Math.floor(p.x * dpr), Math.floor(p.y * dpr), 1, 1).data;
            return Array.from(d);
        }""",
        [viewport, x, y],
    )
    r, g, b, a = rgba
    assert a == 255 and r == g == b, f"expected an opaque grey pixel, got {rgba}"
    return r


@pytest.fixture
async def meeting(db: Database) -> MadeMeeting:
    """The test's own meeting (tests.factories): a board, its coordinator, no case yet."""
    return await make_meeting(db, cases=0, invite=("radiologist",))


@pytest.fixture
async def imaging_case(login: Any, settings: Settings, db: Database, meeting: MadeMeeting) -> ImagingCase:
    coordinator = await login(meeting.coordinator)
    return await new_imaging_case(coordinator, settings, db, slices=SLICES, size=SIZE, family_name="Vérané",
                                  meeting_id=meeting.id)


async def descriptor_of(login: Any, user: MadeUser, case: ImagingCase, study_uid: str) -> dict[str, Any]:
    client = await login(user)
    series = (await client.get(f"/api/imaging/studies/{study_uid}/series?case_id={case.case_id}")).json()
    url = f"{series[0]['url']}?case_id={case.case_id}"
    body: dict[str, Any] = (await client.get(url)).json()
    return body


async def open_case(page: Page, base: str, case: ImagingCase, user: MadeUser) -> None:
    await sign_in(page, base, user.username, user.password)
    await page.goto(f"{base}/cases/{case.case_id}")
    await page.evaluate("window.caseImagingReady")
    await expect(page.locator("[data-studies-body] tr[data-study-uid]")).to_have_count(2)


async def test_coordinator_attaches_and_reads_a_ct(new_page: Any, live_server: Any, login: Any,
                                                   imaging_case: ImagingCase, meeting: MadeMeeting) -> None:
    page: Page = await new_page(viewport=(1280, 720))
    await open_case(page, live_server.url, imaging_case, meeting.coordinator)
    panel = page.locator("[data-case-imaging]")
    readiness = page.locator(".col-side ul.readiness > li").nth(1)
    await expect(page.locator("[data-missing-images]")).to_be_visible()
    await expect(readiness).to_have_class("todo")

    # Attach the current study: the readiness follows without reloading, and the server kept it.
    current_row = page.locator(f"tr[data-study-uid='{imaging_case.current_uid}']")
    await current_row.locator("input[data-attach]").check()
    await expect(current_row).to_have_class("is-attached")
    await expect(page.locator("[data-missing-images]")).to_be_hidden()
    await expect(readiness).to_have_class("done")
    await expect(panel).to_have_attribute("data-attached-count", "1")
    api = await login(meeting.coordinator)
    case_json = (await api.get(f"/api/cases/{imaging_case.case_id}")).json()
    assert case_json["study_uids"] == [imaging_case.current_uid]
    assert "studies" not in case_json["readiness"]["missing"]

    # Open the CT series from the study's series list.
    await current_row.locator("[data-series-toggle]").click()
    series_row = page.locator(f"tr[data-series-for='{imaging_case.current_uid}']")
    await series_row.locator("[data-open-series]").first.click()
    await page.wait_for_function("() => caseViewer.getState().viewports[0].seriesUid !== null")
    await page.evaluate("caseViewer.settled()")
    descriptor = await descriptor_of(login, meeting.coordinator, imaging_case, imaging_case.current_uid)
    assert len(descriptor["frames"]) == SLICES

    lung = image_point(70.0, 5.0)  # left lung: the lesion is in the right one
    aorta = image_point(0.0, 20.0)
    await page.click("#case-viewer [data-viewer-action='preset'][data-value='mediastinum']")
    k = index_at(descriptor, 0.8)  # upper thorax: both lungs at full size
    below = index_at(descriptor, 0.2)  # abdomen: soft tissue where the lung will be
    await page.evaluate(f"caseViewer.scrollTo({below}, 0)")
    assert 90 <= await grey(page, 0, *lung) <= 170  # soft tissue / muscle, mid-grey at C40 W400
    # The viewer has the keyboard focus once a series is opened from the list: an arrow key moves one slice.
    await page.keyboard.press("ArrowDown")
    moved = (await page.evaluate("caseViewer.getState()"))["viewports"][0]["index"]
    assert abs(moved - below) == 1
    await page.evaluate(f"caseViewer.scrollTo({k}, 0)")
    state = await page.evaluate("caseViewer.getState()")
    assert state["viewports"][0]["index"] == k
    assert state["viewports"][0]["studyUid"] == imaging_case.current_uid
    # Mediastinal window (C 40, W 400): lung -850 HU is black, the contrast aorta (195 HU) is light grey.
    assert await grey(page, 0, *lung) <= 8
    assert 205 <= await grey(page, 0, *aorta) <= 245
    # Lung window (C -600, W 1500): lung comes up to (−850 + 1350) / 1500 ≈ 85, the aorta saturates.
    await page.click("#case-viewer [data-viewer-action='preset'][data-value='lung']")
    window = (await page.evaluate("caseViewer.getState()"))["viewports"][0]["window"]
    assert window["center"] == -600 and window["width"] == 1500
    assert 70 <= await grey(page, 0, *lung) <= 100
    assert await grey(page, 0, *aorta) >= 250

    # Client coordinates of the same anatomy land on the same canvas pixel (imageToClient is what the room uses).
    client_point = await page.evaluate(f"caseViewer.imageToClient({lung[0]}, {lung[1]}, 0)")
    assert client_point is not None and client_point["x"] > 0 and client_point["y"] > 0
    # Nothing sticks out sideways at 1280x720 (the panel lives in the page's main column).
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    if SHOTS:
        await page.screenshot(path="/tmp/case-imaging-1280x720.png", full_page=True)
        await page.locator(".ci-viewer").screenshot(path="/tmp/case-imaging-viewer-1280x720.png")


async def test_prior_and_current_side_by_side(new_page: Any, live_server: Any, login: Any,
                                              imaging_case: ImagingCase, meeting: MadeMeeting) -> None:
    api = await login(meeting.coordinator)
    attached = await api.post(f"/api/cases/{imaging_case.case_id}/studies",
                              json={"study_uids": [imaging_case.prior_uid, imaging_case.current_uid]})
    assert attached.status_code == 200
    page: Page = await new_page(viewport=(3840, 2160))
    await open_case(page, live_server.url, imaging_case, meeting.coordinator)
    await expect(page.locator("[data-missing-images]")).to_be_hidden()
    await page.click("[data-case-imaging] [data-action='compare']")
    await page.wait_for_function(
        "() => caseViewer.getState().layout === '1x2' && caseViewer.getState().viewports.slice(0, 2)"
        ".every((v) => v.seriesUid !== null)")
    state = await page.evaluate("caseViewer.getState()")
    assert [v["studyUid"] for v in state["viewports"][:2]] == [imaging_case.prior_uid, imaging_case.current_uid]

    # The lesion (right lung, 35 HU) grew from 8 to 14 mm in radius: 11 mm from its centre, at its own height,
    # the current study shows tumour (mid-grey at C40 W400) where the prior shows lung (black).
    lesion_t = 0.72
    rim = image_point(-80.0 + 11.0, 0.0)
    for i, uid in enumerate((imaging_case.prior_uid, imaging_case.current_uid)):
        descriptor = await descriptor_of(login, meeting.coordinator, imaging_case, uid)
        await page.evaluate(f"caseViewer.setActive({i}); caseViewer.applyPreset('mediastinum', {i}); "
                            f"caseViewer.scrollTo({index_at(descriptor, lesion_t)}, {i})")
    assert await grey(page, 0, *rim) <= 8
    assert 95 <= await grey(page, 1, *rim) <= 155
    if SHOTS:
        await page.screenshot(path="/tmp/case-imaging-3840x2160.png", full_page=True)

    # Prefetch for the meeting: the progress follows the server's job to the end (polling GET .../prefetch).
    panel = page.locator("[data-case-imaging]")
    await page.click("[data-case-imaging] [data-action='prefetch']")
    await expect(panel).to_have_attribute("data-prefetch-state", "done", timeout=60_000)
    await expect(page.locator("[data-prefetch-status]")).to_contain_text("Ready for the meeting")
    assert await page.locator("[data-prefetch-progress]").evaluate("bar => bar.value") == 1


async def test_an_import_with_a_foreign_patient_is_refused_whole_and_non_dicom_is_reported(
        new_page: Any, live_server: Any, imaging_case: ImagingCase, tmp_path: Path,
        meeting: MadeMeeting) -> None:
    stranger = SyntheticPatient("IPPX0000001", "CH de Villefranche", "Autrepatient", "Zoé", date(1990, 2, 3), "F")
    foreign = tmp_path / "autre-patient.dcm"
    foreign.write_bytes(to_part10(ct_series(stranger, slices=1, rows=32, columns=32)[0]))
    text = tmp_path / "compte-rendu.txt"
    text.write_text("Ceci n'est pas une image DICOM.\n", encoding="utf-8")
    own = tmp_path / "bon-patient.dcm"
    own.write_bytes(to_part10(ct_series(imaging_case.patient, slices=1, rows=32, columns=32)[0]))

    page: Page = await new_page(viewport=(1280, 720))
    await open_case(page, live_server.url, imaging_case, meeting.coordinator)
    await page.set_input_files("[data-import-files]", [str(foreign), str(text), str(own)])
    await expect(page.locator("[data-import-chosen]")).to_contain_text("compte-rendu.txt")
    await page.click("[data-case-imaging] [data-action='import']")
    results = page.locator("[data-import-results]")
    await expect(results).to_be_visible()
    await expect(results.locator("tbody tr")).to_have_count(3)

    # Another patient's file refuses the whole import (issue 13): nothing stored, and the uploader sees what the
    # file says beside the case's patient, the differing fields marked.
    foreign_row = results.locator("tr[data-file='autre-patient.dcm']")
    await expect(foreign_row).to_have_attribute("data-result", "refused")
    await expect(foreign_row).to_contain_text("not the case's patient")
    identity = foreign_row.locator("[data-identity]")
    await expect(identity.locator("[data-field='family_name']")).to_contain_text("AUTREPATIENT")
    await expect(identity.locator("[data-field='family_name']")).to_contain_text(imaging_case.patient.family_name)
    await expect(identity.locator(".ci-identity-differs[data-field='birth_date']")).to_have_count(1)
    await expect(results.locator("tr[data-file='bon-patient.dcm']")).to_have_attribute("data-result", "refused")
    await expect(page.locator("[data-import-error]")).to_contain_text("Nothing of this import was stored")
    await expect(page.locator("[data-studies-body] tr[data-study-uid]")).to_have_count(2)

    await page.set_input_files("[data-import-files]", [str(text), str(own)])
    await page.click("[data-case-imaging] [data-action='import']")
    await expect(results.locator("tbody tr")).to_have_count(2)
    refused = results.locator("tr[data-file='compte-rendu.txt']")
    await expect(refused).to_have_attribute("data-result", "refused")
    message = (await refused.locator("td").nth(2).inner_text()).strip()
    assert message, "a refused file says why"
    await expect(results.locator("tr[data-file='bon-patient.dcm']")).to_have_attribute("data-result", "ok")
    # The good file's study is attached by the server; the panel reloaded the list and the readiness follows.
    await expect(page.locator("[data-studies-body] tr[data-study-uid]")).to_have_count(3)
    await expect(page.locator("[data-missing-images]")).to_be_hidden()
    await expect(page.locator("[data-import-error]")).to_be_hidden()
    if SHOTS:
        await page.locator("[data-import-form]").screenshot(path="/tmp/case-imaging-import-1280x720.png")


async def test_errors_are_shown_and_the_page_keeps_working(new_page: Any, live_server: Any,
                                                           imaging_case: ImagingCase, meeting: MadeMeeting) -> None:
    page: Page = await new_page(viewport=(1280, 720), locale="fr-FR")
    await open_case(page, live_server.url, imaging_case, meeting.coordinator)
    # Study dates in the page's language (French here: DICOM DA 20261102 is "2 nov. 2026").
    current_row = page.locator(f"tr[data-study-uid='{imaging_case.current_uid}']")
    await expect(current_row.locator("td.col-when")).to_have_text("2 nov. 2026")
    await expect(page.locator("[data-missing-images]")).to_contain_text("Images manquantes")
    # The archive goes away (a PACS that is down answers 503) and an upload is over the size limit (413).
    await page.route(f"**/api/cases/{imaging_case.case_id}/studies", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": "unavailable", "message": "PACS unreachable, retrying."}'))
    await page.route(f"**/api/cases/{imaging_case.case_id}/imports", lambda route: route.fulfill(
        status=413, content_type="application/json",
        body='{"error": "payload_too_large", "message": "The upload is larger than the limit of 10 bytes."}'))
    await page.click("[data-case-imaging] [data-action='reload']")
    error = page.locator("[data-imaging-error]")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("PACS unreachable, retrying.")
    await expect(error.locator("[data-action='retry']")).to_be_visible()

    zipped: FilePayload = {"name": "big.zip", "mimeType": "application/zip", "buffer": b"PK" + b"\0" * 64}
    await page.set_input_files("[data-import-files]", [zipped])
    await page.click("[data-case-imaging] [data-action='import']")
    too_large = page.locator("[data-import-error]")
    await expect(too_large).to_be_visible()
    await expect(too_large).to_contain_text("limit of 10 bytes")
    await expect(too_large).to_have_attribute("data-status", "413")

    # The rest works: the viewer's toolbar, and the list once the archive is back.
    await page.click("#case-viewer [data-viewer-action='layout'][data-value='1x2']")
    assert (await page.evaluate("caseViewer.getState()"))["layout"] == "1x2"
    await page.unroute(f"**/api/cases/{imaging_case.case_id}/studies")
    await error.locator("[data-action='retry']").click()
    await expect(error).to_be_hidden()
    await expect(page.locator("[data-studies-body] tr[data-study-uid]")).to_have_count(2)


@pytest.fixture(scope="module")
def small_upload_server(settings: Settings, db: Database) -> Iterator[ServerThread]:
    """The same app and data with a 64 KiB upload limit, to meet a real 413 (the shared server allows 512 MB)."""
    server = ServerThread(create_app(dataclasses.replace(settings, max_upload_bytes=64 * 1024)))
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_an_upload_over_the_limit_is_refused_clearly(new_page: Any, small_upload_server: ServerThread,
                                                           imaging_case: ImagingCase, meeting: MadeMeeting) -> None:
    page: Page = await new_page(viewport=(1280, 720))
    await open_case(page, small_upload_server.url, imaging_case, meeting.coordinator)
    big = to_part10(ct_series(imaging_case.patient, slices=1, rows=256, columns=256)[0])  # 128 KiB of pixels
    payload: FilePayload = {"name": "grand.dcm", "mimeType": "application/dicom", "buffer": big}
    await page.set_input_files("[data-import-files]", [payload])
    await page.click("[data-case-imaging] [data-action='import']")
    error = page.locator("[data-import-error]")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-status", "413")
    await expect(error).to_contain_text("Too large")
    await expect(page.locator("[data-import-results]")).to_be_hidden()
    await expect(page.locator("[data-case-imaging] [data-action='import']")).to_be_enabled()


async def test_a_cd_from_another_hospital_is_reconciled_only_by_the_coordinators_choice(
        new_page: Any, live_server: Any, imaging_case: ImagingCase, tmp_path: Path, meeting: MadeMeeting) -> None:
    """IHE Import Reconciliation: files of the case's patient under another hospital's identifier are refused;
    the coordinator sees both identities side by side, and files them under the case's patient only after ticking
    that both are the same person — or refuses them, and nothing is stored."""
    own = imaging_case.patient
    elsewhere = SyntheticPatient(f"VLF{own.patient_id[-6:]}", "CH de Villefranche", own.family_name.upper(), "Eloi",
                                 own.birth_date, own.sex)
    cd = tmp_path / "cd-villefranche.dcm"
    cd.write_bytes(to_part10(ct_series(elsewhere, slices=1, rows=32, columns=32)[0]))
    page: Page = await new_page(viewport=(1280, 720))
    await open_case(page, live_server.url, imaging_case, meeting.coordinator)
    results = page.locator("[data-import-results]")
    reconcile = page.locator("[data-reconcile]")

    # Refused, with both identities side by side (the hospital's identifier differs) and the choice offered.
    await page.set_input_files("[data-import-files]", [str(cd)])
    await page.click("[data-case-imaging] [data-action='import']")
    row = results.locator("tr[data-file='cd-villefranche.dcm']")
    await expect(row).to_have_attribute("data-result", "refused")
    identity = row.locator("[data-identity]")
    await expect(identity.locator(".ci-identity-differs[data-field='issuer']")).to_contain_text("CH de Villefranche")
    await expect(reconcile).to_be_visible()
    button = reconcile.locator("[data-action='reconcile']")
    await expect(button).to_be_disabled()  # nothing happens before the explicit choice

    # Refusing stores nothing.
    await reconcile.locator("[data-action='reconcile-refuse']").click()
    await expect(reconcile).to_be_hidden()
    await expect(page.locator("[data-reconcile-status]")).to_contain_text("nothing")
    await expect(page.locator("[data-studies-body] tr[data-study-uid]")).to_have_count(2)

    # Choosing: the same files again, filed under the case's patient, their own identity kept inside.
    await page.click("[data-case-imaging] [data-action='import']")
    await expect(reconcile).to_be_visible()
    if SHOTS:
        await page.locator("[data-import-form]").screenshot(path="/tmp/case-imaging-reconcile-1280x720.png")
    await reconcile.locator("[data-reconcile-confirm]").check()
    await button.click()
    await expect(row).to_have_attribute("data-result", "reconciled")
    await expect(reconcile).to_be_hidden()
    await expect(page.locator("[data-reconcile-status]")).to_contain_text("Original Attributes")
    await expect(page.locator("[data-studies-body] tr[data-study-uid]")).to_have_count(3)
