"""A guest opens the link of their invitation mail in a real browser: the token leaves the address bar before
anything is used, the button uses it, and the room shows them as a guest."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import expect

from rcp.db import Database
from tests.conftest import sign_in
from tests.factories import make_meeting, unique
from tests.fixtures.smtp import MailBox, join_link

pytestmark = [pytest.mark.browser]


async def test_a_guest_joins_from_the_mail(new_page: Any, live_server: Any, db: Database,
                                          smtp_server: MailBox) -> None:
    base = live_server.url
    made = await make_meeting(db, cases=1, invite=(), starts_at=datetime.now(UTC) + timedelta(minutes=30))
    coordinator = await sign_in(base, made.coordinator.username, made.coordinator.password)
    address = f"{unique('guest')}@chu-x.fr"
    try:
        invited = await coordinator.post(f"/api/meetings/{made.id}/guests", json={
            "display_name": "Dr Denise EXTERNE", "email": address, "specialty": "surgeon", "hospital": "CHU X"})
        assert invited.status_code == 201, invited.text
    finally:
        await coordinator.http.aclose()
    _link, token = join_link((await smtp_server.wait_for(address))[0])

    page = await new_page(bypass_csp=True)  # the room page's checks evaluate strings
    await page.goto(f"{base}/join#{token}")
    await expect(page).to_have_url(f"{base}/join")  # the token left the address bar (and the history entry)
    button = page.get_by_role("button", name="Join the meeting")
    await expect(button).to_be_visible()
    await button.click()
    await expect(page).to_have_url(re.compile(rf"/meetings/{made.id}/room$"))
    assert token not in page.url
    participants = page.locator("[data-room-participants]")
    await expect(participants).to_contain_text("Dr Denise EXTERNE")
    await expect(participants).to_contain_text("guest, invited as Surgeon")

    # The same link a second time (another browser): refused, and says why.
    again = await new_page()
    await again.goto(f"{base}/join#{token}")
    await again.get_by_role("button", name="Join the meeting").click()
    await expect(again.locator(".alert-error")).to_contain_text("already been used")
