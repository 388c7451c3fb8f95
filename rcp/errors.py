"""One exception tree for the whole control plane.

Every error knows its HTTP status, a stable machine code, and a message that says what to do next. Messages
name fields and identifiers chosen by the service (ids, codes), never a patient's data: they reach logs and
clients.

    RcpError
    ├── BadRequest          400 bad_request       (unreadable JSON, wrong content type)
    ├── NotAuthenticated    401 not_authenticated
    ├── Forbidden           403 forbidden          (CSRF, role)
    ├── NotFound            404 not_found          (also what an uninvited user sees: no existence leak)
    ├── MethodNotAllowed    405 method_not_allowed
    ├── Conflict            409 conflict           (state does not allow it: closed meeting, duplicate identifier)
    ├── PayloadTooLarge     413 too_large
    ├── Invalid             422 invalid            (fields: {name: message})
    ├── TooManyRequests     429 too_many_requests
    └── Unavailable         503 unavailable        (PACS or receiver down; retried)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Invalid",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "RcpError",
    "TooManyRequests",
    "Unavailable",
]


class RcpError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    #: WebSocket close / error-frame code (RFC 6455 private range 4000-4999 mirrors the HTTP status).
    ws_code: ClassVar[int] = 4500
    #: When to try again, sent as ``Retry-After`` (RFC 9110 §10.2.3) with a 429 or a 503; a subclass may set it
    #: before calling ``__init__`` (rcp.auth.throttle.Throttled).
    retry_after_s: int | None = None

    def __init__(self, message: str, *, fields: Mapping[str, str] | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = dict(fields or {})
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


class BadRequest(RcpError):
    status = 400
    code = "bad_request"
    ws_code = 4400


class NotAuthenticated(RcpError):
    status = 401
    code = "not_authenticated"
    ws_code = 4401

    def __init__(self, message: str = "Sign in first: this request needs a session or a bearer token.") -> None:
        super().__init__(message)


class Forbidden(RcpError):
    status = 403
    code = "forbidden"
    ws_code = 4403


class NotFound(RcpError):
    status = 404
    code = "not_found"
    ws_code = 4404


class MethodNotAllowed(RcpError):
    status = 405
    code = "method_not_allowed"
    ws_code = 4405


class Conflict(RcpError):
    status = 409
    code = "conflict"
    ws_code = 4409


class PayloadTooLarge(RcpError):
    status = 413
    code = "too_large"
    ws_code = 4413


class Invalid(RcpError):
    status = 422
    code = "invalid"
    ws_code = 4422


class TooManyRequests(RcpError):
    status = 429
    code = "too_many_requests"
    ws_code = 4429


class Unavailable(RcpError):
    status = 503
    code = "unavailable"
    ws_code = 4503
