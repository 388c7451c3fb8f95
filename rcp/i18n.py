"""Languages: French and English interface strings (gettext, Babel catalogs) and locale-aware dates.

Catalogs live as ``.po`` files in ``web/locale`` and are compiled in memory at start-up, so there is no build step
and no binary file in the repository. The language of a request comes from the user's setting, else the
``rcp_locale`` cookie, else the browser's Accept-Language, else the configured default.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from datetime import date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from starlette.types import ASGIApp, Receive, Scope, Send

from rcp.clock import as_utc

__all__ = [
    "LOCALES",
    "LOCALE_DIR",
    "N_",
    "LocaleMiddleware",
    "current_locale",
    "format_day",
    "format_moment",
    "gettext",
    "negotiate",
    "ngettext",
    "use_locale",
]

LOCALES = ("fr", "en")
LOCALE_DIR = Path(__file__).resolve().parent.parent / "web" / "locale"
LOCALE_COOKIE = "rcp_locale"

current_locale: ContextVar[str] = ContextVar("rcp_locale", default="fr")


@cache
def translations(locale: str) -> NullTranslations:
    po = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer)


def N_(message: str) -> str:
    """Mark a string for extraction (Babel's default ``N_`` keyword); it is translated where it is shown."""
    return message


def gettext(message: str) -> str:
    return translations(current_locale.get()).ugettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current_locale.get()).ungettext(singular, plural, n)


def use_locale(locale: str) -> None:
    current_locale.set(locale if locale in LOCALES else LOCALES[0])


def negotiate(*, user_locale: str = "", cookie: str = "", accept_language: str = "", default: str = "fr") -> str:
    """Pick fr or en: explicit choices first, then the browser's ordered preferences (RFC 9110 §12.5.4)."""
    for choice in (user_locale, cookie):
        if choice in LOCALES:
            return choice
    ranked: list[tuple[float, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality + index * 1e-6, tag.strip().lower()))
    for _, tag in sorted(ranked):
        language = tag.split("-")[0]
        if language in LOCALES:
            return language
    return default


def _babel_locale() -> Locale:
    try:
        return Locale.parse(current_locale.get())
    except (UnknownLocaleError, ValueError):
        return Locale.parse("fr")


def format_moment(value: datetime | None, timezone: str, fmt: str = "medium") -> str:
    """A stored UTC instant shown in the meeting's zone and the reader's language ("jeu. 26 nov. 2026, 14:00")."""
    if value is None:
        return ""
    zone = ZoneInfo(timezone)
    if fmt == "time":
        return format_time(as_utc(value).astimezone(zone), format="short", locale=_babel_locale())
    pattern = "EEE d MMM y, HH:mm" if fmt == "medium" else fmt
    return format_datetime(as_utc(value), pattern, tzinfo=zone, locale=_babel_locale())


def format_day(value: date | None, fmt: str = "medium") -> str:
    return "" if value is None else format_date(value, format=fmt, locale=_babel_locale())


class LocaleMiddleware:
    """Sets the request's language (after authentication, so the user's own setting wins)."""

    def __init__(self, app: ASGIApp, *, default: str) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            headers = dict(scope["headers"])
            cookies = headers.get(b"cookie", b"").decode("latin-1")
            cookie = ""
            for part in cookies.split(";"):
                name, _, value = part.strip().partition("=")
                if name == LOCALE_COOKIE:
                    cookie = value
            user = scope.get("user")
            locale = negotiate(
                user_locale=getattr(user, "locale", "") if getattr(user, "is_authenticated", False) else "",
                cookie=cookie,
                accept_language=headers.get(b"accept-language", b"").decode("latin-1"),
                default=self.default,
            )
            token = current_locale.set(locale)
            try:
                await self.app(scope, receive, send)
            finally:
                current_locale.reset(token)
        else:
            await self.app(scope, receive, send)
