"""The coordinator's delivery status fragments and the retry button, served by a real ASGI app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from rcp.auth.models import User
from rcp.auth.sessions import CurrentUser
from rcp.db import Database
from rcp.epr.models import Delivery
from rcp.epr.outbox import enqueue
from rcp.epr.routes import routes
from rcp.http import error_handlers
from rcp.i18n import LocaleMiddleware
from rcp.scheduling.models import BoardCoordinator, Meeting
from rcp.templating import render_error
from tests.epr.conftest import add_case
from tests.epr.samples import sample_document


class _As:
    """Stands in for the session middleware: every request is made by ``user``."""

    def __init__(self, app: ASGIApp, user: Callable[[], Any]) -> None:
        self.app, self.user = app, user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = self.user()
        await self.app(scope, receive, send)


async def _user(db: Database, username: str, role: str) -> CurrentUser:
    async with db.session() as session:
        user = User(username=username, role=role)
        session.add(user)
        await session.flush()
        return CurrentUser.of(user, via="token")


async def test_status_fragment_and_retry(epr_db: Database) -> None:
    case = await add_case(epr_db)
    coordinator = await _user(epr_db, "secretariat", "coordinator")
    clinician = await _user(epr_db, "dr-who", "clinician")
    async with epr_db.session() as session:
        meeting = await session.get(Meeting, case.meeting_id)
        assert meeting is not None
        session.add(BoardCoordinator(board_id=meeting.board_id, user_id=coordinator.id))
        first = sample_document()
        await enqueue(session, first, ["mllp://127.0.0.1:9", "file:///tmp/rcp-drop"], case_id=case.id,
                      meeting_id=case.meeting_id, patient_id=case.patient_id)
        await enqueue(session, sample_document(version=2, set_root=first.set_id), ["mllp://127.0.0.1:9"],
                      case_id=case.id, meeting_id=case.meeting_id, patient_id=case.patient_id)
        await (await session.connection()).execute(
            sa.update(Delivery).where(col(Delivery.receiver_key) == "mllp://127.0.0.1:9",
                                      col(Delivery.document_version) == 1)
            .values(status="needs_attention", attempts=1, last_error="AE: Patient inconnu")
        )
    current = {"user": coordinator}
    app = Starlette(routes=routes, exception_handlers=error_handlers(render_error))
    app.state.db = epr_db
    transport = httpx.ASGITransport(app=_As(LocaleMiddleware(app, default="en"), lambda: current["user"]))
    async with httpx.AsyncClient(transport=transport, base_url="http://rcp") as http:
        page = await http.get(f"/epr/cases/{case.id}/deliveries")
        assert page.status_code == 200, page.text
        assert "Needs attention" in page.text and "AE: Patient inconnu" in page.text
        assert "Waits for the previous version to be delivered first." in page.text
        assert page.text.count('action="/epr/deliveries/') == 1
        meeting_page = await http.get(f"/epr/meetings/{case.meeting_id}/deliveries")
        assert meeting_page.status_code == 200 and "HL7 interface engine" in meeting_page.text
        api = (await http.get(f"/api/epr/meetings/{case.meeting_id}/deliveries")).json()["deliveries"]
        assert [(d["document_version"], d["receiver_kind"], d["status"]) for d in api] == [
            (1, "file", "pending"), (1, "mllp", "needs_attention"), (2, "mllp", "pending")]
        stuck = next(d for d in api if d["needs_attention"])
        answer = await http.post(f"/epr/deliveries/{stuck['id']}/retry")
        assert answer.status_code == 303 and answer.headers["location"] == f"/cases/{case.id}#epr-deliveries"
        again = await http.post(f"/api/epr/deliveries/{stuck['id']}/retry")
        assert again.status_code == 409
        current["user"] = clinician  # not invited, not a coordinator: the case does not exist for them
        assert (await http.get(f"/epr/cases/{case.id}/deliveries")).status_code == 404
        assert (await http.post(f"/api/epr/deliveries/{stuck['id']}/retry")).status_code == 404
    async with epr_db.session() as session:
        row = (await session.exec(select(Delivery).where(Delivery.id == stuck["id"]))).one()
    assert row.status == "pending" and row.attempts == 0
