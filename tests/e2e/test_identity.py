"""End to end in headless Chromium: search before creating (RNIV) on the coordinator's add-case form.

A coordinator registers a patient through the form, then starts typing the same person again (the name in
capitals, the same birth date and given name, another hospital's IPP): as the traits are typed the form lists the
registered look-alike with its identity status (GET /api/patients/duplicates), and "This is the patient" puts the
new case on that record — no second patient is created. Screenshots at 1280x720 and 3840x2160 go to /tmp
(RCP_SCREENSHOTS=0 turns them off).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlmodel import func, select

from rcp.db import Database
from rcp.scheduling.models import Patient
from tests.e2e.pages import sign_in
from tests.factories import make_meeting

pytestmark = [pytest.mark.browser]

SHOTS = os.environ.get("RCP_SCREENSHOTS", "1") != "0"


def a_name() -> str:
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8)).capitalize()


async def patients_named(db: Database, family: str) -> int:
    async with db.session() as s:
        return int((await s.exec(select(func.count()).select_from(Patient)
                                 .where(Patient.family_name == family))).one())


async def type_patient(page: Page, family: str, given: str, ipp: str, question: str) -> None:
    details = page.locator("details#add-case")
    if await details.get_attribute("open") is None:
        await page.click("details#add-case > summary")
    await page.check("#mode-new")
    await page.fill("#f-question", question)
    await page.fill("#f-family_name", family)
    await page.fill("#f-given_names", given)
    await page.fill("#f-birth_date", "1972-11-08")
    await page.select_option("#f-sex", "male")
    await page.fill("#f-ipp", ipp)
    await page.locator("#f-ipp").blur()


@pytest.mark.parametrize("size", [(1280, 720), (3840, 2160)])
async def test_the_form_shows_a_look_alike_and_takes_the_registered_record(
        new_page: Any, live_server: Any, db: Database, size: tuple[int, int]) -> None:
    meeting = await make_meeting(db, cases=0)
    family, given = f"Doublon-{a_name()}", a_name()
    page: Page = await new_page(viewport=size, locale="fr-FR")
    await sign_in(page, live_server.url, meeting.coordinator.username, meeting.coordinator.password)
    await page.goto(f"{live_server.url}/meetings/{meeting.id}")

    # The first registration: no look-alike, the case is added.
    await type_patient(page, family, given, f"E2E{secrets.token_hex(4)}", "Première question ?")
    await page.select_option("#f-identity_status", "validated")
    await page.select_option("#f-identity_document", "passport")
    await page.click("form[data-add-case] .actions button")
    await expect(page.locator("tr[data-case-id]")).to_have_count(1)
    await page.wait_for_load_state("load")

    # The same person typed again, from another hospital's papers: listed as already registered, with the
    # identity status the record has, before anything is created.
    await type_patient(page, family.upper(), given, f"AUTRE{secrets.token_hex(4)}", "Deuxième avis ?")
    duplicates = page.locator("[data-duplicates]")
    await expect(duplicates).to_be_visible()
    candidate = duplicates.locator("li[data-duplicate]")
    await expect(candidate).to_have_count(1)
    await expect(candidate).to_contain_text(family.upper())
    await expect(candidate.locator("[data-identity-status='validated']")).to_contain_text("Identité validée")
    if SHOTS:
        await duplicates.screenshot(path=f"/tmp/rcp-duplicates-{size[0]}.png")
        await page.locator("details#add-case").screenshot(path=f"/tmp/rcp-add-case-{size[0]}.png")

    # Adding the case without a choice is held back: the form asks to take the record or to say it is not them.
    await page.click("form[data-add-case] .actions button")
    await expect(page.locator("#e-duplicates_checked")).to_be_visible()
    assert await patients_named(db, family) == 1

    # "This is the patient": the new case goes to the registered record.
    await candidate.locator("button[name='use_patient']").click()
    await expect(page.locator("tr[data-case-id]")).to_have_count(2)
    assert await patients_named(db, family) == 1
    await expect(page.locator("tr[data-case-id] .family")).to_have_text([family.upper(), family.upper()])
