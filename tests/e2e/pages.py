"""Driving the app's pages in headless Chromium: signing in through the login page, opening a meeting room."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.conftest import DEMO_PASSWORD
from tests.factories import totp_code
from tests.fixtures.browser import NewPage

__all__ = ["TIMEOUT_MS", "open_room", "sign_in"]

#: How long a page may take to show something before the test gives up (a hang, not a speed goal).
TIMEOUT_MS = 30_000


async def sign_in(page: Page, base: str, username: str = "secretariat", password: str = DEMO_PASSWORD) -> None:
    """Through the login page, as a demo user (their password by default) or a factory user (``user.password``)."""
    await page.goto(f"{base}/meetings")
    await expect(page).to_have_url(f"{base}/login?next=/meetings")
    await page.fill("#f-username", username)
    await page.fill("#f-password", password)
    await page.click("button[type=submit].primary")
    # The second factor: the code the account's authenticator shows now (tests.factories keeps its secret).
    await expect(page).to_have_url(f"{base}/login/code")
    await page.fill("#f-code", totp_code(username))
    await page.click("button[type=submit].primary")
    await expect(page).to_have_url(f"{base}/meetings")


async def open_room(new_page: NewPage, url: str, cookie: str, meeting_id: int, size: tuple[int, int]) -> Page:
    page = await new_page(
        viewport=size, bypass_csp=True
    )  # playwright evaluates strings; the CSP forbids eval
    name, value = cookie.split("=", 1)
    await page.context.add_cookies([{"name": name, "value": value, "url": url}])
    await page.goto(f"{url}/meetings/{meeting_id}/room")
    await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
    return page
