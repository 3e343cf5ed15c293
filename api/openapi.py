"""The OpenAPI 3.1 document, generated from the operation table (`api/app.py`) and the
msgspec schemas (`api/schemas.py`): every route, parameter, body and response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api.schemas import ErrorBody

Endpoint = Callable[[Request], Awaitable[Response]]

ERRORS = {
    400: "bad request (a parameter or the JSON)",
    401: "missing, expired or invalid token",
    403: "the client address is not on the user's allow-list",
    404: "no such resource (or not the caller's)",
    409: "conflicts with the current state",
    413: "request body too large",
    422: "the body does not validate",
    429: "rate limited (see Retry-After)",
    503: "the engine could not do it now",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # query | path
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    endpoint: Endpoint
    summary: str
    response: Any = None  # a msgspec type, or None
    status: int = 200
    body: Any = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    secured: bool = True
    media: str = "application/json"
    tags: tuple[str, ...] = field(default=())
    op_id: str | None = None  # default: the endpoint's name


UUID_SCHEMA = {"type": "string", "format": "uuid"}
ID = Param("id", "path", UUID_SCHEMA, "the resource's id", required=True)


def page_params(max_page: int) -> tuple[Param, ...]:
    return (
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": max_page}),
        Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page"),
    )


def build(ops: list[Op], *, exchanges: list[str], title: str = "WSM API") -> dict[str, Any]:
    types = {o.response for o in ops if o.response is not None}
    types |= {o.body for o in ops if o.body is not None}
    types.add(ErrorBody)
    (_, components) = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    if "NewConnection" in components and exchanges:
        components["NewConnection"]["properties"]["exchange"]["enum"] = exchanges
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "WSM's REST API: the caller's WebSocket connections, subscriptions, "
            "events and metrics. Bearer JWT (HS256, Supabase claims).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _ref(tp: Any) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{tp.__name__}"}


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.op_id or op.endpoint.__name__,
        "security": [{"bearer": []}] if op.secured else [],
    }
    if op.tags:
        out["tags"] = list(op.tags)
    if op.params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in op.params
        ]
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    if op.response is None:
        content: dict[str, Any] = {op.media: {"schema": {"type": "string"}}}
    else:
        content = {op.media: {"schema": _ref(op.response)}}
    responses: dict[str, Any] = {str(op.status): {"description": "success", "content": content}}
    codes = set(op.errors)
    if op.secured:
        codes |= {401, 403, 429}
    if op.body is not None:
        codes |= {400, 413, 422}
    if op.params:
        codes |= {400}
    for code in sorted(codes):
        responses[str(code)] = {
            "description": ERRORS[code],
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    out["responses"] = responses
    return out
