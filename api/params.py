"""Query and path parameters: parsed strictly, refused with 400 naming the parameter."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from uuid import UUID

from starlette.requests import Request

from api.errors import ApiError, bad_request, not_found


def uuid_path(request: Request, what: str, name: str = "id") -> UUID:
    """A path id; anything that is not a UUID is "not found" (it cannot name a row)."""
    raw = request.path_params[name]
    try:
        return UUID(raw)
    except ValueError:
        raise not_found(what, raw) from None


def uuid_query(request: Request, name: str, *, required: bool = True) -> UUID | None:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise bad_request(f"{name} is required", name)
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise bad_request(f"{name} must be a UUID", name) from None


def limit(request: Request) -> int:
    api = request.app.state.api
    raw = request.query_params.get("limit")
    if raw is None:
        return int(api.config.page_size)
    if not raw.isdigit() or not 1 <= int(raw) <= api.config.max_page_size:
        raise bad_request(f"limit must be an integer in 1..{api.config.max_page_size}", "limit")
    return int(raw)


def timestamp(request: Request, name: str) -> datetime | None:
    """ISO 8601 (a naive one is UTC) or seconds since the epoch."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not 0 <= value < 1e11:
            raise bad_request(f"{name} is out of range", name)
        return datetime.fromtimestamp(value, tz=UTC)
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} must be ISO 8601 or seconds since the epoch", name) from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def positive_float(request: Request, name: str, *, low: float, high: float) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number", name) from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be in {low:g}..{high:g}", name)
    return value


def choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}", name)
    return raw


# -- keyset cursors: opaque to clients -----------------------------------------------------


def encode_cursor(*parts: object) -> str:
    text = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(request: Request, arity: int) -> list[str] | None:
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_request("cursor is not one this API gave", "cursor") from None
    parts = text.split("|")
    if len(parts) != arity:
        raise bad_request("cursor is not one this API gave", "cursor")
    return parts


def created_cursor(request: Request) -> tuple[datetime, UUID] | None:
    parts = decode_cursor(request, 2)
    if parts is None:
        return None
    try:
        return datetime.fromisoformat(parts[0]), UUID(parts[1])
    except ValueError:
        raise ApiError(
            400, "bad_request", "cursor is not one this API gave", field="cursor"
        ) from None
