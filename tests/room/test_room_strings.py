"""The room's one table of strings (web/templates/room_strings.html) has every text its modules ask for.

The room's ES modules carry no English fallback (issue 15, item 2): a key a module reads and the table lacks would
show "undefined" to the person in the room. This reads the keys each module uses — ``S.x`` in decision.js, ``L.x.y``
in room.js, ``this.L.x`` (the table's ``room.video``) in conference.js — and resolves each in the table as the
server renders it, in both languages, without a browser.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rcp import i18n
from rcp.room.routes import proposal_choices
from rcp.templating import WEB_DIR, templates

JS = WEB_DIR / "static" / "js"

#: (module, pattern of a key path it reads, where in the table that path starts).
USES = [
    ("decision.js", re.compile(r"\bS\.([A-Za-z_]\w*)"), ("decision",)),
    ("room.js", re.compile(r"\bL\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"), ("room",)),
    ("conference.js", re.compile(r"\bthis\.L\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"), ("room", "video")),
]


def table(locale: str) -> dict[str, Any]:
    token = i18n.current_locale.set(locale)
    try:
        html = templates.env.get_template("room_strings.html").render(proposals=proposal_choices())
    finally:
        i18n.current_locale.reset(token)
    match = re.search(r'<script type="application/json" id="page-strings">(.*)</script>', html, re.DOTALL)
    assert match, html[:200]
    loaded: dict[str, Any] = json.loads(match.group(1))
    return loaded


def uses() -> list[tuple[str, tuple[str, ...]]]:
    found = []
    for module, pattern, base in USES:
        for path in sorted(set(pattern.findall((JS / module).read_text(encoding="utf-8")))):
            found.append((module, (*base, *path.split("."))))
    return found


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_every_key_a_room_module_reads_is_in_the_table(locale: str) -> None:
    strings = table(locale)
    missing = []
    for module, path in uses():
        node: Any = strings
        for part in path:
            if not isinstance(node, dict):
                break  # a text reached: what follows is a method (L.guest_as.replace)
            if part not in node:
                missing.append(f"{module}: {'.'.join(path)}")
                break
            node = node[part]
    assert missing == [], missing
    assert len(uses()) > 60  # the patterns still find the modules' keys


def test_the_table_is_translated_and_holds_the_proposal_types() -> None:
    french, english = table("fr"), table("en")
    assert french["decision"]["case_status"] == "Statut du dossier" and english["decision"]["case_status"] == "Case status"
    assert [p["key"] for p in french["decision"]["proposals"]][:1] == ["surgery"]
    assert french["decision"]["proposals"][0]["label"] == "Chirurgie"
    assert english["decision"]["proposals"][0]["label"] == "Surgery"
