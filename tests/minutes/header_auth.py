"""Sign-in by header for the minutes route tests, which test the routes' rules and not the session middleware
(tests/auth covers that): ``X-Test-User: <id>`` authenticates as that user."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from rcp.auth.sessions import CurrentUser

__all__ = ["HeaderAuth"]


class HeaderAuth:
    """Test stand-in for the session middleware: ``X-Test-User: <id>`` authenticates as that user."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = dict(scope["headers"]).get(b"x-test-user")
            if raw:
                scope["user"] = CurrentUser(id=int(raw), username=f"u{int(raw)}", name="", role="clinician",
                                            specialty="", hospital="", locale="fr", via="token")
        await self.app(scope, receive, send)
