"""Server-rendered pages: one jinja2 environment with the gettext extension, the project's filters and globals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from rcp import i18n
from rcp.errors import RcpError
from rcp.scheduling.quorum_statement import quorum_statement
from rcp.scheduling.specialties import SPECIALTIES, specialty

__all__ = ["WEB_DIR", "render", "render_error", "templates"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _specialty_label(key: str) -> str:
    try:
        return i18n.gettext(specialty(key).label)
    except ValueError:
        return key


def _build() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["moment"] = i18n.format_moment
    env.filters["day"] = i18n.format_day
    env.filters["specialty"] = _specialty_label
    env.globals["SPECIALTIES"] = SPECIALTIES
    env.globals["quorum_statement"] = quorum_statement
    env.globals["current_locale"] = i18n.current_locale.get
    return Jinja2Templates(env=env)


templates = _build()


def render(request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200) -> Response:
    user = request.scope.get("user")
    base: dict[str, Any] = {
        "user": user if getattr(user, "is_authenticated", False) else None,
        "csrf_token": getattr(user, "csrf_token", ""),
        "locale": i18n.current_locale.get(),
    }
    base.update(context or {})
    response = templates.TemplateResponse(request, name, base, status_code=status)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def render_error(request: Request, error: RcpError) -> Response:
    return render(request, "error.html", {"error": error}, status=error.status)
