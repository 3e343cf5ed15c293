"""JSON in and out: orjson for responses, msgspec for validated request bodies."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import orjson
from starlette.responses import Response

T = TypeVar("T")


def _default(obj: Any) -> Any:
    return msgspec.to_builtins(obj)  # msgspec Structs (and what they hold)


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def json_response(
    content: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(content, status_code=status, headers=headers)


def decode_body(body: bytes, tp: type[T]) -> T:
    """`body` as `tp`, or ApiError 400 (not JSON) / 422 (wrong shape) naming the field."""
    from api.errors import ApiError

    if not body:
        raise ApiError(400, "bad_request", "a JSON body is required")
    try:
        return msgspec.json.decode(body, type=tp)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = None
        if " - at `$." in text:
            field = text.rpartition(" - at `$.")[2].rstrip("`")
        unknown = text.partition("Object contains unknown field `")[2].partition("`")[0]
        if unknown:
            field = f"{field}.{unknown}" if field else unknown
        raise ApiError(422, "invalid", text, field=field) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
