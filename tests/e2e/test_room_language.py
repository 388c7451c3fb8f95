"""Issue 15, item 2 in headless Chromium: the room and its decision form speak one language.

The room page used to hand its decision form a few translated strings while decision.js carried English defaults,
so a French page read "Surgery…", "Follows the guideline", "Case status", "Still missing:" and a quorum line in two
languages. Now every text of the room's modules comes from one table rendered by the server with gettext
(web/templates/room_strings.html), and this test proves it from what a person sees.

Word lists come from the catalogs themselves (web/locale): the English words are the words of the msgids that are not
also French words (no French msgstr uses them: "Question", "Patient", "Date", "Stage" are both), and the French
words those of the msgstrs that no msgid uses. The room is opened by a physician in French, the chair opens the first
case (the decision form shows with its quorum line, labels, options and "Still missing" list) and the visible text of
the page — text, the options of its lists, and the titles, placeholders and accessible names of its controls — may
hold no English word; then the same in English with no French word. What the people of the meeting wrote (meeting
title, agenda questions, names, hospitals) is data, not interface, and the agenda is emptied of it as in
tests/e2e/test_empty_decision.py; names of people and places on the page are left out by their elements.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from functools import cache

import pytest
import sqlalchemy as sa
from babel.messages.pofile import read_po
from playwright.async_api import Page
from sqlmodel import col

from rcp.app import create_app
from rcp.db import Database
from rcp.i18n import LOCALE_DIR
from rcp.scheduling.models import Case
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service
from tests.servers import ServerThread

#: The browser tests' marks (the word lists' own test runs with the fast tests).
IN_BROWSER = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 30_000
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")

#: Words of both languages' catalogs that are codes, names or abbreviations, not words of one language.
NEUTRAL = {
    "rcp", "tnm", "dicom", "webrtc", "websocket", "ws", "hu", "ins", "ipp", "rpps", "who", "oms", "ecog", "figo", "iss",
    "ann", "arbor", "pet", "ct", "irm", "mri", "pdf", "cda", "fhir", "hl", "mllp", "https", "url", "id", "dr", "pr",
    "mm", "cm", "gy", "fps", "totp", "ok", "yyyy", "dd", "jj", "aaaa", "se", "im", "pos", "inst", "w", "l",
    "c", "f", "i", "r", "x", "e", "g", "n", "m", "t", "p", "fr", "en",
}


@cache
def _catalog(locale: str) -> list[tuple[str, str]]:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    pairs: list[tuple[str, str]] = []
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        pairs.extend((str(i), str(s or "")) for i, s in zip(ids, strings, strict=False))
    return pairs


def _words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(PLACEHOLDER.sub(" ", text))}


@cache
def english_only() -> frozenset[str]:
    """Words of the English msgids that no French msgstr uses (so a French page never needs them)."""
    english = set().union(*(_words(i) for i, _s in _catalog("fr")))
    french = set().union(*(_words(s) for _i, s in _catalog("fr")))
    return frozenset(english - french - NEUTRAL)


@cache
def french_only() -> frozenset[str]:
    """Words of the French msgstrs that no English msgid uses."""
    english = set().union(*(_words(i) for i, _s in _catalog("fr")))
    french = set().union(*(_words(s) for _i, s in _catalog("fr")))
    return frozenset(french - english - NEUTRAL)


#: What a person reads on the page: the rendered text of what is visible, the options of visible lists, and the
#: tooltip, placeholder and accessible name of visible elements. Elements that hold the meeting's own data (names
#: of people and hospitals, the meeting title, what was typed) are left out: they are not interface text.
VISIBLE = """() => {
  const data = 'h1, [data-room-presenter], [data-field="responsible_physician"] select, .room-quorum, .room-cases,'
    + ' [data-case-question], [data-case-summary], [data-case-staging]';
  const skip = [...document.querySelectorAll(data)];
  // Text marked as another language (the language switch's "English", "Français") is that language's.
  const lang = document.documentElement.lang;
  const foreign = [...document.querySelectorAll('body [lang]')].filter((e) => e.lang !== lang);
  // The people of the meeting and their hospitals, wherever they are shown (tiles, list, menus).
  const names = [...rcpRoom.room.participants.values()].flatMap((p) => [p.display_name, p.hospital])
    .filter(Boolean).sort((a, b) => b.length - a.length);
  const clean = (t) => names.reduce((text, n) => text.split(n).join(' '), t);
  const shown = (el) => el.checkVisibility();
  const parts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.nodeType === Node.TEXT_NODE ? node.parentElement : node;
    if (!el || [...skip, ...foreign].some((s) => s.contains(el))) continue;
    if (['SCRIPT', 'STYLE', 'TEMPLATE', 'OPTION'].includes(el.tagName) || !shown(el)) continue;
    if (node.nodeType === Node.TEXT_NODE) { parts.push(clean(node.textContent)); continue; }
    for (const attr of ['title', 'placeholder', 'aria-label']) {
      if (el.getAttribute(attr)) parts.push(clean(el.getAttribute(attr)));
    }
    if (el.tagName === 'SELECT') parts.push(...[...el.options].map((o) => clean(o.textContent)));
  }
  return parts.map((t) => t.trim()).filter(Boolean).join('\\n');
}"""

#: The quorum line is the server's sentence (rcp.scheduling.quorum_statement) followed by the names present: only its
#: sentence is interface text.
QUORUM = "() => { const t = document.querySelector('.room-quorum').textContent; return t.split(' · ')[0]; }"


@pytest.fixture(scope="module")
async def room_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, int]]:
    """The demo service with the scheduled meeting's agenda emptied of its (French) clinical text."""
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("room-language-e2e"))
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            await s.exec(sa.update(Case).where(col(Case.meeting_id) == meeting_id).values(
                question="", clinical_summary="", staging="", performance_status=None))
            await s.commit()
    finally:
        await db.close()
    node = ServerThread(create_app(settings)).start()
    try:
        yield node, meeting_id
    finally:
        node.close()


async def _room_text(node: ServerThread, meeting_id: int, new_page: NewPage, locale: str) -> tuple[Page, str]:
    """The room in ``locale`` with the first case open and its decision form loaded: what the page shows."""
    chair = await RoomClient.open(node.url, await session_cookie(node.url, "secretariat"), meeting_id)
    try:
        cookie = await session_cookie(node.url, "dr.oncologue")
        page = await new_page(viewport=(1280, 720), bypass_csp=True)  # playwright evaluates strings
        name, value = cookie.split("=", 1)
        await page.context.add_cookies([{"name": name, "value": value, "url": node.url},
                                        {"name": "rcp_locale", "value": locale, "url": node.url}])
        await page.goto(f"{node.url}/meetings/{meeting_id}/room")
        await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
        await chair.send({"type": "case.set", "case_id": await page.evaluate(
            "Number(document.querySelector('[data-case-id]').dataset.caseId)")})
        # The form has loaded the draft: its quorum line and its "still missing" list are shown.
        await page.wait_for_selector("[data-room-decision]:not([hidden]) [data-field='proposal'] select",
                                     timeout=TIMEOUT_MS)
        await page.wait_for_function("document.querySelector('.room-quorum').textContent.length > 0",
                                     timeout=TIMEOUT_MS)
        await page.wait_for_selector("[data-room-decision] .decision-summary ul li", timeout=TIMEOUT_MS)
        text = await page.evaluate(VISIBLE) + "\n" + await page.evaluate(QUORUM)
        return page, text
    finally:
        await chair.close()


def _offending(text: str, words: frozenset[str]) -> list[str]:
    """The lines of ``text`` with a word of ``words``, the word first (what the failure shows)."""
    found = []
    for line in text.splitlines():
        hits = sorted(_words(line) & words)
        if hits:
            found.append(f"{', '.join(hits)}: {line.strip()[:120]}")
    return found


def test_the_word_lists_are_meaningful() -> None:
    """The lists hold the words that betray a language (and not the shared ones), so the checks below can fail."""
    english, french = english_only(), french_only()
    for word in ("surgery", "follows", "guideline", "trial", "proposed", "discussed", "informed", "missing",
                 "still", "met", "expected", "present"):
        assert word in english, word
    for word in ("chirurgie", "conforme", "référentiel", "essai", "proposé", "discuté", "informé", "manque",
                 "atteint", "présents"):
        assert word in french, word
    for shared in ("question", "patient", "date", "quorum", "rcp", "tnm"):
        assert shared not in english and shared not in french, shared


@IN_BROWSER[0]
@IN_BROWSER[1]
async def test_the_french_room_shows_no_english_word(room_service: tuple[ServerThread, int],
                                                     new_page: NewPage) -> None:
    node, meeting_id = room_service
    page, text = await _room_text(node, meeting_id, new_page, "fr")
    assert "Il manque encore" in text and "Quorum des présents" in text, text
    assert _offending(text, english_only()) == [], "\n" + "\n".join(_offending(text, english_only()))
    # The proposal types and case statuses are the catalog's, in French.
    options = await page.locator("[data-field='proposal'] select option").all_inner_texts()
    assert "Chirurgie" in options and "Surgery" not in options, options
    # A refused value is explained under its field in French too (rcp.minutes.staging's rules, N_-marked).
    tnm = page.locator("[data-field='clinical_tnm'] input[maxlength='200']")
    await tnm.fill("cT2 N0 MX")
    await tnm.blur()
    await page.wait_for_selector("[data-field='clinical_tnm'].has-error", timeout=TIMEOUT_MS)
    message = await page.inner_text("[data-field='clinical_tnm'] .field-status")
    assert "MX" in message and _offending(message, english_only()) == [], message


@IN_BROWSER[0]
@IN_BROWSER[1]
async def test_the_english_room_shows_no_french_word(room_service: tuple[ServerThread, int],
                                                     new_page: NewPage) -> None:
    node, meeting_id = room_service
    page, text = await _room_text(node, meeting_id, new_page, "en")
    assert "Still missing:" in text and "Quorum present now" in text, text
    assert _offending(text, french_only()) == [], "\n" + "\n".join(_offending(text, french_only()))
    options = await page.locator("[data-field='case_status'] select option").all_inner_texts()
    assert "Discussed" in options and "Registered only" in options, options
