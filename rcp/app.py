"""The Starlette application: a route table, middleware, and a lifespan that owns the shared resources."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from media.plane import open_media_plane
from rcp import __version__, monitoring
from rcp.auth import accounts, audit, login_steps, sso
from rcp.auth import routes as auth_routes
from rcp.auth import trail as audit_trail
from rcp.auth.sessions import SessionBackend
from rcp.auth.throttle import open_password_throttle
from rcp.config import Settings
from rcp.db import Database
from rcp.epr import routes as epr_routes
from rcp.epr.outbox import configured_receivers
from rcp.epr.worker import build_worker
from rcp.errors import NotAuthenticated, RcpError
from rcp.heap import settle_heap
from rcp.http import (
    BodyLimitMiddleware,
    CsrfMiddleware,
    OutageMiddleware,
    SecurityHeadersMiddleware,
    error_handlers,
)
from rcp.i18n import LocaleMiddleware
from rcp.imaging import routes as imaging_routes
from rcp.imaging.service import ImagingService
from rcp.logs import AccessLogMiddleware
from rcp.mail import Composer, MailWorker, transport_for
from rcp.minutes import routes as minutes_routes
from rcp.minutes import withdrawal_routes
from rcp.minutes.copies import copies_on_signed, copies_on_withdrawn
from rcp.minutes.delivery import epr_on_signed, epr_on_withdrawn
from rcp.minutes.writeback import WritebackWorker, imaging_on_withdrawn
from rcp.openapi import document
from rcp.room import routes as room_routes
from rcp.room.decisions import wire_decisions
from rcp.room.live import open_rooms
from rcp.room.revocation import announce as announce_revocation
from rcp.scheduling import access
from rcp.scheduling import api as scheduling_api
from rcp.scheduling import pages as scheduling_pages
from rcp.templating import WEB_DIR, render_error

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


async def openapi(request: Request) -> Response:
    return JSONResponse(document(request.app.routes, title="RCP collaboration service", version=__version__))


async def page_error(request: Request, error: RcpError) -> Response:
    if isinstance(error, NotAuthenticated):
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return await render_error(request, error)


async def _audit_activity(db: Database, what: str) -> None:
    """DCM 110100 Application Activity: an audit repository must see when the service starts and stops."""
    async with db.session() as s:
        await audit.record(s, event="application_activity", action="E", what=what, source="localhost")


#: Every few minutes, the agendas of meetings starting soon are pulled from the PACS into the frame cache, so
#: that nobody waits on the PACS during the meeting (DESIGN §5).
AGENDA_PREFETCH_EVERY_S = 300.0


async def _prefetch_agendas(imaging: ImagingService, db: Database, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await imaging.prefetch_upcoming_meetings(db)
            await imaging.trim_cache()
        except Exception:  # the PACS may be down: the next round tries again, the app keeps serving
            logger.exception("agenda prefetch round failed; retrying in %.0f s", AGENDA_PREFETCH_EVERY_S)
        try:
            await asyncio.wait_for(stop.wait(), timeout=AGENDA_PREFETCH_EVERY_S)
        except TimeoutError:
            pass


def build_routes() -> list[BaseRoute]:
    return [
        Route("/health", monitoring.health, methods=["GET"]),
        Route("/ready", monitoring.ready, methods=["GET"]),
        Route("/metrics", monitoring.metrics, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        *auth_routes.routes,
        *sso.routes,
        *login_steps.routes,
        *accounts.routes,
        *audit_trail.routes,
        *scheduling_api.routes,
        *scheduling_pages.routes,
        *epr_routes.routes,
        *imaging_routes.routes,
        *minutes_routes.routes,
        *withdrawal_routes.routes,
        *room_routes.routes,
        Mount("/static", app=StaticFiles(directory=WEB_DIR / "static"), name="static"),
    ]


def mail_composers() -> dict[str, Composer]:
    """What the mail outbox sends besides plain text: guests' join links, the GP's and correspondents' copies of
    a signed fiche and the notices that one was withdrawn (``rcp serve`` and ``rcp worker`` alike)."""
    from rcp.auth.links import JOIN_MAIL, compose_join_mail
    from rcp.minutes.copies import COPY_MAIL, WITHDRAWAL_MAIL, compose_copy, compose_withdrawal

    return {JOIN_MAIL: compose_join_mail, COPY_MAIL: compose_copy, WITHDRAWAL_MAIL: compose_withdrawal}


def create_app(settings: Settings, *, database: Database | None = None) -> Starlette:
    """The whole service for ``settings``; ``database`` lets a test share one engine (it then owns it)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Resources are released in the reverse order of their acquisition (the exit stack's LIFO order).
        async with AsyncExitStack() as stack:
            db = database or Database(settings.database_url)
            if database is None:
                stack.push_async_callback(db.close)
            app.state.settings = settings
            app.state.db = db
            app.state.auth_backend = auth_backend
            logger.info("RCP service %s starting on %s", __version__, settings.node_id)
            await _audit_activity(db, f"application start ({settings.node_id})")
            stack.push_async_callback(_audit_activity, db, f"application stop ({settings.node_id})")

            app.state.imaging = await ImagingService.open(settings, database=db)
            stack.push_async_callback(app.state.imaging.close)
            app.state.minutes_writeback = await stack.enter_async_context(
                WritebackWorker(db, app.state.imaging.archive))
            # A signature writes its EPR deliveries in its own transaction (the outbox pattern).
            # ... and the GP's and correspondents' copies, in the one mailer's outbox (rcp.minutes.copies).
            app.state.on_signed = [epr_on_signed(configured_receivers(settings)),
                                   copies_on_signed(settings.default_locale)]
            # A withdrawal (a version entered in error) writes its MDM^T11 / entered-in-error deliveries the same
            # way; other parts of the app append their own hooks here (rcp.minutes.withdrawals.WithdrawnHook).
            app.state.on_withdrawn = [epr_on_withdrawn(configured_receivers(settings)), imaging_on_withdrawn,
                                      copies_on_withdrawn(settings.default_locale)]

            # The media plane (one aiortc peer per participant) and the live rooms that speak through it.
            app.state.media = await stack.enter_async_context(open_media_plane(settings))
            app.state.rooms = await stack.enter_async_context(open_rooms(settings, db, media=app.state.media))
            # Sockets follow the session (issue 13): a revocation heard from any node drops this node's cached copy
            # of the session too; routes publish through app.state.revoke (rcp.http.revoke).
            app.state.rooms.revocations.hooks.append(auth_backend.forget_revoked)
            app.state.revoke = functools.partial(announce_revocation, app.state)
            # Decision edits and signatures reach the room; the quorum comes from who is in the room; key-image
            # marks go into the case's draft.
            wire_decisions(app.state)
            # OpenID Connect providers (rcp.auth.oidc): discovery documents and keys, read when first needed.
            from rcp.auth.oidc import OidcClient

            app.state.oidc = OidcClient(settings)
            stack.push_async_callback(app.state.oidc.close)
            # Password re-checks (signature, amendment) are throttled per account, on every node alike.
            app.state.password_throttle = await stack.enter_async_context(open_password_throttle(settings))

            # The one mailer (guests' join links): a worker on the durable outbox, poked after each enqueue.
            transport = transport_for(settings)
            if transport is None:
                logger.warning("no RCP_SMTP_URL: mails (guests' join links) wait in the outbox until one is set")
            mailer = None
            if transport is not None and settings.embedded_worker:
                mailer = MailWorker(settings, db, transport=transport, composers=mail_composers())
            app.state.mailer = mailer

            worker = build_worker(settings, db) if settings.embedded_worker else None
            if worker is not None:
                app.state.epr_worker = worker
                stack.push_async_callback(worker.close)
            # Background work: the task group waits for its tasks, which end once ``stop`` is set on exit.
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            stop = asyncio.Event()
            stack.callback(stop.set)
            if worker is not None:
                tasks.create_task(worker.run(stop), name="epr-worker")
            tasks.create_task(_prefetch_agendas(app.state.imaging, db, stop), name="agenda-prefetch")
            if mailer is not None:
                tasks.create_task(mailer.run(stop), name="mail-worker")
            if settings.adt_listen:
                # Identities from the hospital (IHE PAM ADT over MLLP): rcp.epr.adt.
                from rcp.epr.adt import serve as serve_adt

                host, _, port = settings.adt_listen.rpartition(":")
                adt_server = await serve_adt(db, host or "0.0.0.0", int(port))
                app.state.adt_server = adt_server
                stack.callback(adt_server.close)
            if settings.audit_syslog_url:
                from rcp.auth.siem import SyslogForwarder

                tasks.create_task(SyslogForwarder(settings, db).run(stop), name="audit-syslog")
            settle_heap()  # full GC pauses would hold room events back (rcp.heap)
            yield
        logger.info("RCP service stopped")

    auth_backend = SessionBackend(settings)
    middleware = [
        Middleware(AccessLogMiddleware),
        Middleware(SecurityHeadersMiddleware, tls=settings.tls, media_routes=frozenset({"meeting_room"})),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes),
        Middleware(OutageMiddleware, render_page=page_error),
        Middleware(AuthenticationMiddleware, backend=auth_backend),
        Middleware(LocaleMiddleware, default=settings.default_locale),
        Middleware(CsrfMiddleware),
    ]
    return Starlette(
        debug=False,
        routes=build_routes(),
        middleware=middleware,
        exception_handlers=error_handlers(page_error, on_refused=access.record_refusal),
        lifespan=lifespan,
    )
