"""The coordinator's and clinicians' pages for meetings and agendas (server-rendered, jinja2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rcp.http import current_user, path_int
from rcp.scheduling import service
from rcp.templating import render

__all__ = ["routes"]


async def home(request: Request) -> Response:
    return RedirectResponse("/meetings", status_code=303)


async def meetings(request: Request) -> Response:
    user = current_user(request)
    async with request.app.state.db.session() as s:
        upcoming = await service.list_meetings(s, user, when="upcoming")
        past = await service.list_meetings(s, user, when="past")
    return render(request, "meetings.html", {"upcoming": upcoming, "past": past})


async def meeting(request: Request) -> Response:
    user = current_user(request)
    async with request.app.state.db.session() as s:
        detail = await service.meeting_detail(s, user, path_int(request, "meeting_id"), request=request)
    return render(request, "meeting.html", {"meeting": detail})


routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/meetings", meetings, methods=["GET"], name="meetings"),
    Route("/meetings/{meeting_id:int}", meeting, methods=["GET"], name="meeting"),
]
