"""Who is on the other end: the client's address, from the peer or from a trusted proxy's ``X-Forwarded-For``.

Behind a reverse proxy every request comes from the proxy, so throttling by address (rcp.auth.throttle) and the
audit trail's source (DICOM PS3.15 A.5 "Network Access Point ID") need the address the proxy saw. Anyone can send
``X-Forwarded-For``, though: a guesser who could choose their address would walk out of the per-address throttle
and write any source into the trail. So the header is read only when the peer is a proxy listed in
``RCP_TRUSTED_PROXIES`` (addresses or CIDR blocks), and then from the right (RFC 7239 §5.2: each proxy appends the
address it received from): the first address that is not itself a trusted proxy is the client.

This is the one place that decides it: the sign-in, the audit trail and the access log (rcp.logs) all ask
:func:`client_address`.

>>> trusted = ("10.0.0.0/8",)
>>> forwarded_client("10.0.0.5", "203.0.113.9, 10.0.0.7", trusted)
'203.0.113.9'
>>> forwarded_client("198.51.100.4", "203.0.113.9", trusted)  # not from a trusted proxy: the header is ignored
'198.51.100.4'
>>> forwarded_client("10.0.0.5", "not-an-address", trusted)
'10.0.0.5'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from starlette.types import Scope

__all__ = ["client_address", "forwarded_client", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"`` ...; raises ``ValueError`` naming the entry that is not one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR block (e.g. 10.0.0.1 or 10.0.0.0/24)") from None
    return tuple(networks)


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_client(peer: str, forwarded_for: str, trusted: tuple[str, ...]) -> str:
    """The client's address given the socket's ``peer`` and the ``X-Forwarded-For`` header's value."""
    networks = _networks(trusted)
    client = peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while hops and _trusted(client, networks):
        hop = hops.pop()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a garbled hop: keep the last address a trusted proxy vouched for
        client = hop
    return client


def client_address(scope: Scope) -> str:
    """The client's address for an ASGI scope (``request.scope``): ``""`` when unknown."""
    peer = scope.get("client")
    address = str(peer[0]) if peer else ""
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    trusted: tuple[str, ...] = getattr(settings, "trusted_proxies", ())
    if not trusted or not address:
        return address
    values = [value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
    return forwarded_client(address, ",".join(values), trusted)
