"""The OpenAPI 3.1 document, generated from the routes themselves.

An ``ApiRoute`` is a Starlette ``Route`` that also carries what it accepts and returns (pydantic models); the
document at ``/api/openapi.json`` is built from the app's route table, so it cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.routing import BaseRoute, Mount, Route

from rcp.ids import MAX_ID

__all__ = ["ApiRoute", "BodyLimit", "Operation", "document"]

_ERRORS = {
    "400": "Unreadable body (invalid JSON, wrong content type)",
    "401": "Not signed in",
    "403": "Not allowed (CSRF token missing, role)",
    "404": "Unknown id, or not among the caller's meetings",
    "409": "Conflict with the current state",
    "413": "Body too large",
    "422": "Fields missing or invalid; see fields",
}


@dataclass(frozen=True)
class Operation:
    method: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    many: bool = False
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)
    #: For non-JSON bodies or answers (uploads, frames, syslog): the media type.
    media_type: str = ""


#: Which request-body limit a route accepts (bytes from ``Settings``: ``max_body_bytes``, ``max_upload_bytes``).
BodyLimit = Literal["json", "upload"]


class ApiRoute(Route):
    """A route that declares what it accepts: its body (model or media type) and its body-size limit.

    ``body_limit="upload"`` lets the route receive up to ``RCP_MAX_UPLOAD_BYTES`` (``rcp.http.BodyLimitMiddleware``
    reads it from the matched route); every other route gets the small JSON limit.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], *, method: str, summary: str, tag: str,
                 body: type[BaseModel] | None = None, response: type[BaseModel] | None = None,
                 many: bool = False, status: int = 200, query: dict[str, str] | None = None,
                 media_type: str = "", name: str | None = None, body_limit: BodyLimit = "json") -> None:
        super().__init__(path, endpoint, methods=[method], name=name)
        self.body_limit: BodyLimit = body_limit
        self.operation = Operation(method=method.lower(), summary=summary, tag=tag, body=body, response=response,
                                   many=many, status=status, query=query or {}, media_type=media_type)


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, Operation]]:
    for route in routes:
        if isinstance(route, ApiRoute):
            yield prefix + route.path, route.operation
        elif isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)


def document(routes: Iterable[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    }

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, dict[str, Any]] = {}
    for path, op in _walk(routes):
        parameters = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID} if conv == "int" else {"type": "string"}}
            for name, conv in re.findall(r"{(\w+)(?::(\w+))?}", path)
        ]
        parameters += [{"name": k, "in": "query", "required": False, "description": v, "schema": {"type": "string"}}
                       for k, v in op.query.items()]
        operation: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "parameters": parameters}
        if op.body is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": ref(op.body)}}}
        elif op.media_type and op.method in {"post", "put"}:
            operation["requestBody"] = {"required": True, "content": {op.media_type: {"schema": {}}}}
        success: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            schema = ref(op.response)
            success["content"] = {"application/json": {"schema": {"type": "array", "items": schema} if op.many
                                                       else schema}}
        elif op.media_type and op.method == "get":
            success["content"] = {op.media_type: {"schema": {}}}
        responses: dict[str, Any] = {str(op.status): success}
        for code, text in _ERRORS.items():
            responses[code] = {"description": text,
                               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        operation["responses"] = responses
        operation["security"] = [{"session": []}, {"bearer": []}]
        clean = re.sub(r"{(\w+):\w+}", r"{\1}", path)
        paths.setdefault(clean, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "rcp_session",
                            "description": "Browser session; unsafe methods also need the X-CSRF-Token header."},
                "bearer": {"type": "http", "scheme": "bearer", "description": "Service-account token."},
            },
        },
    }
