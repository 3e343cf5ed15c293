"""API errors: one small class, rendered as `{"error": {"code", "message", "field"?}}`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.jsonio import json_response


class ApiError(Exception):
    """A refused request: its HTTP status, a stable machine code, a message for people, and
    the request field it is about (if any)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r}, field={self.field!r})"

    def body(self) -> dict[str, object]:
        err: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}

    def response(self) -> Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


def not_found(what: str, ident: object) -> ApiError:
    """The same answer for "does not exist" and "is someone else's" (no existence oracle)."""
    return ApiError(404, "not_found", f"no {what} {ident}")


def bad_request(message: str, field: str | None = None, *, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message, field=field)


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, "invalid", message, field=field)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    from api.audit import audit_refusal

    audit_refusal(request.scope, exc.status, exc.code, exc.message)
    return exc.response()


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTPExceptions (unknown path, wrong method) in our error format."""
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    err = ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
    if request.url.path.startswith("/api/"):
        from api.audit import audit_refusal

        audit_refusal(request.scope, err.status, err.code, err.message)
    return err.response()
