"""The service configured with the test OpenID Provider (tests/fixtures/oidc_provider.py), and a browser-like client.

The service must know its own address before it starts (its callback and back-channel addresses are registered at
the provider), so :func:`serve_with_provider` binds the server first (``ServerThread``) and builds the app for that
URL. ``signed_in_through_provider`` walks the redirects as a browser does: service -> provider -> service.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from rcp.app import create_app
from rcp.config import OidcProvider, Settings
from tests.fixtures.oidc_provider import OpenIdProvider
from tests.servers import ServerThread

__all__ = ["CLIENT_ID", "OTHER_CLIENT", "Served", "browser", "follow", "serve_with_provider"]

CLIENT_ID = "rcp-test"
SECRET = "rcp-test-secret"
#: Another client registered at the same provider (its tokens are not ours: ``aud``).
OTHER_CLIENT = "other-service"


@dataclass
class Served:
    url: str
    settings: Settings
    provider: OpenIdProvider


class _Late:
    """An ASGI app whose target is set once the server's address is known."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@contextmanager
def serve_with_provider(settings: Settings, provider: OpenIdProvider, **changes: Any) -> Iterator[Served]:
    """The whole service on loopback with ``provider`` as its ``psc`` provider (Pro Santé Connect's settings)."""
    late = _Late()
    server = ServerThread(late)
    configured = dataclasses.replace(settings, public_url=server.url, oidc_providers=(OidcProvider(
        name="psc", issuer=provider.url, client_id=CLIENT_ID, client_secret=SECRET, label="Pro Santé Connect",
        scopes=("openid", "scope_all"), rpps_claims=("SubjectNameID", "preferred_username"), acr_values="eidas1",
        userinfo=True),), **changes)
    late.app = create_app(configured)
    with server:
        yield Served(url=server.url, settings=configured, provider=provider)


async def register(served: Served) -> None:
    provider = served.provider
    await provider.reset()
    await provider.register(CLIENT_ID, SECRET, redirect_uri=f"{served.url}/auth/oidc/psc/callback",
                            post_logout_uri=f"{served.url}/login",
                            backchannel_uri=f"{served.url}/auth/oidc/psc/backchannel-logout")
    await provider.register(OTHER_CLIENT, "other-secret", redirect_uri="http://127.0.0.1:9/cb",
                            post_logout_uri="http://127.0.0.1:9/", backchannel_uri="http://127.0.0.1:9/bc")


def browser(served: Served) -> httpx.AsyncClient:
    """A cookie-keeping client that does not follow redirects by itself (the test reads each hop)."""
    return httpx.AsyncClient(base_url=served.url, timeout=60, follow_redirects=False)


async def follow(http: httpx.AsyncClient, url: str, *, stop_at: str = "", hops: int = 8) -> httpx.Response:
    """GET ``url`` and its redirects, as a browser does, until an answer that is not a redirect, or until the
    next address starts with ``stop_at`` (returned unfollowed: its ``location`` is the next hop)."""
    response = await http.get(url)
    for _ in range(hops):
        location = response.headers.get("location")
        if response.status_code not in {301, 302, 303, 307} or not location:
            return response
        if stop_at and location.startswith(stop_at):
            return response
        response = await http.get(location if "://" in location else str(response.url.join(location)))
    raise AssertionError(f"more than {hops} redirects from {url}")
