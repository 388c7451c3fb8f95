"""uvicorn's HTTP/1.1 protocols, answering a request they cannot parse with the service's JSON error.

A request that is not valid HTTP/1.1 (``Content-Length: abc``, a header line without a colon, both
``Content-Length`` and ``Transfer-Encoding``: RFC 9112 §6.3) never reaches the application: the parser refuses it
inside uvicorn's protocol, which answered ``400`` with the plain text "Invalid HTTP request received." (issue 18).
Both of uvicorn's protocols send that answer from one method, ``send_400_response``; the subclasses here send the
same status, still closing the connection (the rest of the stream cannot be framed), with the body every other
error of the service has (``rcp.errors``: ``{"error": "bad_request", "message": ...}``) and the headers of
``rcp.http.SecurityHeadersMiddleware`` that apply to it.

``rcp serve`` passes :func:`http_protocol` to ``uvicorn.Config(http=...)``; it picks httptools when installed, as
uvicorn's ``"auto"`` does::

    uvicorn.Config(app, http=http_protocol())
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from rcp.errors import BadRequest

__all__ = ["MALFORMED", "JsonErrorsH11Protocol", "http_protocol"]

#: What the client is told: nothing of its request is echoed (it may be anything).
MALFORMED = ("The request is not valid HTTP/1.1: check its request line and headers (Content-Length is a number, "
             "never sent with Transfer-Encoding; every header line has a colon).")

_BODY = json.dumps(BadRequest(MALFORMED).as_json()).encode()
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"connection", b"close"),
]


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the service's JSON body on a request h11 cannot parse."""

    def send_400_response(self, msg: str) -> None:
        for event in (h11.Response(status_code=400, headers=_HEADERS, reason=b"Bad Request"), h11.Data(data=_BODY),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def _httptools_protocol() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # httptools is optional (uvicorn[standard]); h11 is always there
        return None

    class JsonErrorsHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with the service's JSON body on a request httptools cannot parse."""

        def send_400_response(self, msg: str) -> None:
            content = [STATUS_LINE[400]]
            for name, value in [*self.server_state.default_headers, *_HEADERS]:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend([b"\r\n", _BODY])
            self.transport.write(b"".join(content))
            self.transport.close()

    return JsonErrorsHttpToolsProtocol


def http_protocol() -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``: httptools' when installed, else h11's."""
    return _httptools_protocol() or JsonErrorsH11Protocol
