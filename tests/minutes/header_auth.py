"""Sign-in by header for the minutes route tests, which test the routes' rules and not the session middleware
(tests/auth covers that): ``X-Test-User: <id>`` authenticates as that user (``X-Test-Via: token`` as a service
token)."""

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
            headers = dict(scope["headers"])
            raw = headers.get(b"x-test-user")
            if raw:
                # A browser session unless ``X-Test-Via: token`` (a service account's bearer token) says otherwise.
                via = headers.get(b"x-test-via", b"session").decode()
                scope["user"] = CurrentUser(id=int(raw), username=f"u{int(raw)}", name="", role="clinician",
                                            specialty="", hospital="", locale="fr", via=via)
        await self.app(scope, receive, send)
