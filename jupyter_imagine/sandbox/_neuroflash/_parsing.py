"""Reading neuroflash requests: JSON bodies, paging, counts and choices."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request

from ...errors import InvalidRequest
from .. import _art
from .. import _http as http
from ._wire import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ApiError


# ------------------------------------------------------------------------------ parsing
def invalid(field_name: str, message: str) -> ApiError:
    return ApiError(400, message, errors=[{"field": field_name, "message": message}])


async def read_body(request: Request) -> dict[str, Any]:
    return await http.json_body(
        request,
        lambda message: ApiError(400, message),
        missing="Required request body is missing",
        not_json="The request body is not valid JSON",
        not_object="The request body must be a JSON object",
    )


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise invalid(name, f"{name} must be an integer from {low} to {high}")
    return value


def paged(request: Request, items: list[Any]) -> dict[str, Any]:
    """The list envelope for ``items`` at the request's ``page`` (1-based) and ``size``."""
    size = _int_query(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _int_query(request, "page", 1, 1, 10**9)
    total = len(items)
    return {
        "page": {
            "size": size,
            "totalElements": total,
            "totalPages": math.ceil(total / size) if total else 0,
            "currentPage": page,
        },
        "data": items[(page - 1) * size : page * size],
    }


def read_count(body: dict[str, Any], model: dict[str, Any]) -> int:
    raw = body.get("numImages")
    if raw is None:
        return 1
    top = model["maxImages"]
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= top:
        raise invalid("numImages", f"numImages must be from 1 to {top} for {model['id']}")
    return raw


def read_choice(body: dict[str, Any], name: str, allowed: list[str], default: str) -> str:
    value = body.get(name)
    if value in (None, ""):
        return default
    if value not in allowed:
        raise invalid(name, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    try:
        if name == "aspectRatio" and value != "auto":
            _art.aspect_size(value)
    except InvalidRequest as exc:  # pragma: no cover - every catalogue ratio is drawable
        raise invalid(name, exc.message) from None
    return str(value)
