"""Issue 16, item 5 on the case page in headless Chromium: the physician who signed a version withdraws it as
entered in error (reason, wrong patient, password and authenticator code, as for a signature), and the page then
shows it withdrawn with who and why; a physician of the meeting who neither signed it nor coordinates the board is
offered no withdrawal.

The case, its physicians (with a password and a second factor) and the signed version are the test's own rows on
the shared app (tests.minutes.seeding); the browser signs in through the login page. Waits only bound hanging.
"""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.async_api import expect

from rcp.auth.models import User
from rcp.db import Database
from rcp.minutes import store
from tests.e2e.pages import TIMEOUT_MS, sign_in
from tests.factories import totp_code
from tests.fixtures.browser import NewPage
from tests.minutes.seeding import PASSWORD, fill, give_password, seed
from tests.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


def _fresh_ins() -> str:
    body = "2" + "58" + "03" + "49" + f"{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


async def _username(db: Database, user_id: int) -> str:
    async with db.session() as s:
        user = await s.get(User, user_id)
        assert user is not None
        return user.username


async def test_the_signer_withdraws_a_version_from_the_case_page_and_others_are_not_offered_it(
    live_server: ServerThread, db: Database, new_page: NewPage
) -> None:
    seeded = await seed(db, ins=_fresh_ins())
    revision = await fill(db, seeded, key_images=[])
    async with db.session() as s:
        await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision)
    for user_id in (seeded.oncologist, seeded.surgeon):
        await give_password(db, user_id)
    signer, other = await _username(db, seeded.oncologist), await _username(db, seeded.surgeon)
    base = live_server.url

    # A physician of the meeting who did not sign and does not coordinate the board: the version, no action.
    page = await new_page(viewport=(1280, 720))
    await sign_in(page, base, other, PASSWORD)
    await page.goto(f"{base}/cases/{seeded.case_id}")
    await expect(page.locator('[data-signed-version="1"]')).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("[data-withdraw]")).to_have_count(0)
    await expect(page.locator("[data-withdraw-dialog]")).to_have_count(0)

    # The signer: the action, reached with the keyboard, opens the form; a wrong code is refused in words.
    page = await new_page(viewport=(1280, 720))
    await sign_in(page, base, signer, PASSWORD)
    await page.goto(f"{base}/cases/{seeded.case_id}")
    action = page.locator('[data-withdraw="1"]')
    await expect(action).to_be_visible(timeout=TIMEOUT_MS)
    await action.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("[data-withdraw-dialog]")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("it cannot be undone")
    await expect(page.locator("#f-reason")).to_be_focused()
    # Fits a 1280×720 screen: the submit button is inside the viewport.
    box = await page.locator("[data-withdraw-submit]").bounding_box()
    assert box is not None and box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280
    await page.keyboard.type("Fiche saisie dans le dossier d'un autre patient")
    await page.locator("#f-wrong_patient").check()
    await page.fill("#f-password", PASSWORD)
    await page.fill("#f-code", "000000" if totp_code(signer) != "000000" else "111111")
    await page.click("[data-withdraw-submit]")
    await expect(page.locator("[data-withdraw-message]")).to_contain_text("could not be confirmed",
                                                                          timeout=TIMEOUT_MS)
    await expect(page.locator("[data-withdrawn-version]")).to_have_count(0)

    await page.fill("#f-code", totp_code(signer))
    await page.click("[data-withdraw-submit]")
    withdrawn = page.locator('[data-withdrawn-version="1"]')
    await expect(withdrawn).to_be_visible(timeout=TIMEOUT_MS)
    await expect(withdrawn).to_contain_text("Fiche saisie dans le dossier d'un autre patient")
    await expect(withdrawn).to_contain_text("filed under the wrong patient")
    await expect(withdrawn).to_contain_text(re.compile("oncologist", re.IGNORECASE))  # the signer, as seeded
    await expect(page.locator("[data-withdraw]")).to_have_count(0)
    await expect(page.locator('[data-signed-version="1"]')).to_have_count(0)
