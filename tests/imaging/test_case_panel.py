"""The case page's imaging panel (web/templates/imaging/case_studies.html) against the real app.

Each test builds its own meeting (tests.factories), its patient and case through the scheduling API, and stores
small synthetic CTs for that patient in the app's archive (``new_imaging_case`` in tests/imaging/cases.py, shared
with the browser test tests/e2e/test_case_imaging.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from rcp.config import Settings
from rcp.db import Database
from tests.factories import MadeMeeting, make_clinician, make_meeting
from tests.imaging.cases import ImagingCase, new_imaging_case


@pytest.fixture
async def meeting(db: Database) -> MadeMeeting:
    """The test's own meeting: a board and its coordinator, an invited radiologist, no case yet."""
    return await make_meeting(db, cases=0, invite=("radiologist",))


@pytest.fixture
async def imaging_case(login: Any, settings: Settings, db: Database, meeting: MadeMeeting) -> ImagingCase:
    coordinator = await login(meeting.coordinator)
    return await new_imaging_case(coordinator, settings, db, meeting_id=meeting.id)


def _readiness_items(html: str) -> list[str]:
    block = re.search(r'<aside class="col-side">(.*?)</aside>', html, re.DOTALL)
    assert block is not None
    return re.findall(r'<li class="(done|todo)">', block.group(1))


async def test_case_page_has_the_panel_for_a_coordinator(login: Any, imaging_case: ImagingCase,
                                                         meeting: MadeMeeting) -> None:
    coordinator = await login(meeting.coordinator)
    page = await coordinator.get(f"/cases/{imaging_case.case_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert f'data-case-imaging data-case-id="{imaging_case.case_id}" data-manage="true"' in html
    assert '<script type="module" src="/static/js/studies.js"></script>' in html
    assert 'href="/static/css/studies.css"' in html
    assert "data-rcp-viewer" in html and 'id="case-viewer"' in html  # the viewer panel is embedded
    assert 'data-import-form' in html and 'name="files" multiple' in html
    assert 'data-action="prefetch"' in html
    # Nothing attached yet: "missing images", here and in the readiness checklist.
    assert re.search(r'<p class="ci-missing alert" data-missing-images role="status"\s*>', html)
    assert _readiness_items(html)[1] == "todo"
    # The studies the script shows are the patient's studies in the archive.
    studies = (await coordinator.get(f"/api/cases/{imaging_case.case_id}/studies")).json()
    assert {s["study_uid"] for s in studies} == {imaging_case.prior_uid, imaging_case.current_uid}
    assert all(s["modalities"] == ["CT"] and s["series_count"] == 1 and s["image_count"] == 8 for s in studies)
    assert not any(s["attached"] for s in studies)
    # The panel's strings are in the page, valid JSON for the script, with placeholders left for it to fill.
    strings = re.search(r"<script type=\"application/json\" data-imaging-strings>(.*?)</script>", html, re.DOTALL)
    assert strings is not None and "{done}" in strings.group(1)


async def test_clinician_not_invited_gets_404(login: Any, imaging_case: ImagingCase, db: Database) -> None:
    outsider = await login(await make_clinician(db, "radiologist"))  # never invited to this meeting
    assert (await outsider.get(f"/cases/{imaging_case.case_id}")).status_code == 404
    assert (await outsider.get(f"/api/cases/{imaging_case.case_id}/studies")).status_code == 404
    refused = await outsider.post(f"/api/cases/{imaging_case.case_id}/studies",
                                  json={"study_uids": [imaging_case.current_uid]})
    assert refused.status_code == 404


async def test_attaching_through_the_api_updates_readiness(login: Any, imaging_case: ImagingCase,
                                                           meeting: MadeMeeting) -> None:
    coordinator = await login(meeting.coordinator)
    url = f"/api/cases/{imaging_case.case_id}"
    assert "studies" in (await coordinator.get(url)).json()["readiness"]["missing"]

    attached = await coordinator.post(f"{url}/studies", json={"study_uids": [imaging_case.current_uid]})
    assert attached.status_code == 200, attached.text
    assert attached.json()["study_uids"] == [imaging_case.current_uid]
    assert "studies" not in (await coordinator.get(url)).json()["readiness"]["missing"]
    html = (await coordinator.get(f"/cases/{imaging_case.case_id}")).text
    assert _readiness_items(html)[1] == "done"
    assert re.search(r'data-missing-images role="status"\s+hidden', html)
    assert f'data-attached=\'["{imaging_case.current_uid}"]\'' in html
    listed = {s["study_uid"]: s["attached"] for s in (await coordinator.get(f"{url}/studies")).json()}
    assert listed == {imaging_case.prior_uid: False, imaging_case.current_uid: True}

    detached = await coordinator.post(f"{url}/studies", json={"detach": [imaging_case.current_uid]})
    assert detached.json()["study_uids"] == []
    assert "studies" in (await coordinator.get(url)).json()["readiness"]["missing"]


async def test_a_clinician_invited_sees_the_panel_without_attach_controls(login: Any, imaging_case: ImagingCase,
                                                                          meeting: MadeMeeting) -> None:
    radiologist = await login(meeting.invitee("radiologist"))
    page = await radiologist.get(f"/cases/{imaging_case.case_id}")
    assert page.status_code == 200
    assert 'data-manage="false"' in page.text
