"""The interface speaks French and English: complete catalogs, placeholders kept, language from the browser."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import httpx
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from rcp import i18n
from rcp.scheduling.specialties import SPECIALTIES

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "web" / "locale"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")


def catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def ids(value: object) -> tuple[str, ...]:
    """A message id or string, singular or plural, as a tuple of strings."""
    if value is None:
        return ()
    if isinstance(value, tuple | list):
        return tuple(str(v) for v in value)
    return (str(value),)


def untranslated(fr: Catalog, wanted: Sequence[object]) -> list[str]:
    missing = []
    for message_id in wanted:
        key = ids(message_id)
        message = fr.get(key if len(key) > 1 else key[0])
        strings = ids(message.string) if message is not None else ()
        if message is None or not all(strings) or message.fuzzy:
            missing.append(ids(message_id)[0])
    return missing


def test_every_template_msgid_has_a_french_translation() -> None:
    template = catalog(LOCALE / "messages.pot")
    fr = catalog(LOCALE / "fr" / "LC_MESSAGES" / "messages.po", "fr")
    missing = untranslated(fr, [m.id for m in template if m.id])
    assert not missing, f"{len(missing)} strings lack a French translation: {missing[:20]}"


def test_french_translations_keep_their_placeholders() -> None:
    fr = catalog(LOCALE / "fr" / "LC_MESSAGES" / "messages.po", "fr")
    wrong = []
    for message in fr:
        if not message.id:
            continue
        expected = sorted(set(PLACEHOLDER.findall(ids(message.id)[-1])))
        for text in ids(message.string):
            if sorted(set(PLACEHOLDER.findall(text))) != expected:
                wrong.append(ids(message.id)[0])
    assert not wrong, f"placeholders differ in: {wrong}"


def test_the_catalog_is_up_to_date_with_the_sources() -> None:
    """Strings added to templates or Python since the last extraction must be extracted and translated too
    (``pybabel extract -F babel.cfg -k N_ -o web/locale/messages.pot .`` then ``pybabel update``)."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)  # type: ignore[no-untyped-call]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found: dict[object, None] = {}
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found[message] = None
    fr = catalog(LOCALE / "fr" / "LC_MESSAGES" / "messages.po", "fr")
    missing = untranslated(fr, list(found))
    assert not missing, f"{len(missing)} strings in the sources lack a French translation: {missing[:20]}"


def test_specialty_labels_are_translated() -> None:
    assert i18n.translations("fr").ugettext("Pathologist") == "Anatomopathologiste"
    untranslated_labels = [s.label for s in SPECIALTIES if i18n.translations("fr").ugettext(s.label) == s.label]
    assert not untranslated_labels


async def test_pages_follow_the_browsers_language(anonymous: httpx.AsyncClient, login: object) -> None:
    french = await anonymous.get("/login", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert '<html lang="fr">' in french.text and "Connexion" in french.text and "Mot de passe" in french.text
    english = await anonymous.get("/login", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="en">' in english.text and "Sign in" in english.text and "Password" in english.text
    preferred = await anonymous.get("/login", headers={"Accept-Language": "de-DE, en;q=0.4, fr;q=0.9"})
    assert '<html lang="fr">' in preferred.text


async def test_signed_in_pages_and_dates_in_french(login: object) -> None:
    client = await login("dr.pneumologue")  # type: ignore[operator]
    page = await client.get("/meetings", headers={"Accept-Language": "fr"})
    assert page.status_code == 200
    assert "Réunions" in page.text and "À venir" in page.text and "Déconnexion" in page.text
    # Weekday and month names in French, in the board's time zone.
    assert re.search(r"(lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche) \d{1,2} \w+ 20\d\d, \d\d:\d\d", page.text)
    meeting_id = re.findall(r'href="/meetings/(\d+)"', page.text)[0]
    meeting = await client.get(f"/meetings/{meeting_id}", headers={"Accept-Language": "fr"})
    assert "Ordre du jour" in meeting.text and "Question rédigée" in meeting.text and "Quorum" in meeting.text
    english = await client.get("/meetings", headers={"Accept-Language": "en"})
    assert "Upcoming" in english.text and "Réunions" not in english.text
