"""Reading Blockade requests: key, body (JSON, form, multipart), typed fields, seeds."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .. import _http as http
from ._wire import JPEG_QUALITY, MAX_UPLOAD, ApiError


# ------------------------------------------------------------------------------ parsing
def art_seed(*parts: object) -> int:
    """A stable 32-bit number from ``parts``."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") & 0x7FFFFFFF


def owner_of(key: str) -> str:
    """The account a key belongs to: a hash, so no key is ever kept."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def read_api_key(request: Request, body: dict[str, Any]) -> str | None:
    return http.first_key(
        request.headers.get("x-api-key"), request.query_params.get("api_key"), body.get("api_key")
    )


async def read_payload(request: Request) -> dict[str, Any]:
    """The body of a POST as a dict (JSON, multipart or url-encoded; files as bytes)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_part_size=MAX_UPLOAD + 1024)
        except Exception:
            raise ApiError(400, "The request body could not be read.") from None
        out: dict[str, Any] = {}
        for name, value in form.multi_items():
            out[name] = await value.read() if isinstance(value, UploadFile) else value
        return out
    return await http.json_body(
        request,
        _invalid,
        not_json="The request body is not valid JSON.",
        not_object="The request body must be a JSON object.",
    )


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def label(name: str) -> str:
    return name.replace("_", " ")


def read_text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(400, f"The {label(name)} field is required.")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"The {label(name)} must be a string.")
    return value.strip()


def read_int(
    body: dict[str, Any], name: str, *, required: bool = False, lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"The {label(name)} field is required.")
        return None
    if isinstance(value, bool):
        raise ApiError(400, f"The {label(name)} must be an integer.")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise ApiError(400, f"The {label(name)} must be an integer.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(400, f"The {label(name)} must be between {lo} and {hi}.")
    return value


def read_float(body: dict[str, Any], name: str, *, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"The {label(name)} must be a number.") from None
    if not lo <= number <= hi:
        raise ApiError(400, f"The {label(name)} must be between {lo:g} and {hi:g}.")
    return number


def read_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ApiError(400, f"The {label(name)} field must be true or false.")


def read_webhook(body: dict[str, Any]) -> str | None:
    url = read_text(body, "webhook_url")
    if url is None:
        return None
    if not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "The webhook url must be a valid URL.")
    return url


def read_model_version(request: Request) -> str | None:
    value = request.query_params.get("model_version")
    if value in (None, ""):
        return None
    if value not in ("2", "3", "4"):
        raise ApiError(400, "The selected model version is invalid.")
    return value


def read_query_int(
    q: Any, name: str, default: int | None, lo: int | None, hi: int | None
) -> int | None:
    raw = q.get(name)
    if raw in (None, ""):
        return default
    if not re.fullmatch(r"-?\d+", raw.strip()):
        raise ApiError(400, f"The {label(name)} must be an integer.")
    value = int(raw)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise ApiError(400, f"The {label(name)} must be {bounds}.")
    return value


def generator_data(generator: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The generator's params from ``body``: defaults filled in, each checked (400 if wrong)."""
    data: dict[str, Any] = {}
    for name, spec in generator["params"].items():
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.get("required"):
                raise ApiError(400, f"The {label(name)} field is required.")
            if "default_value" in spec:
                data[name] = spec["default_value"]
            continue
        kind = spec.get("type")
        if kind == "int":
            value = read_int(body, name, lo=spec.get("min_value"), hi=spec.get("max_value"))
        elif kind == "select":
            allowed = [o["value"] for o in spec.get("options", [])]
            if value not in allowed:
                raise ApiError(400, f"The selected {label(name)} is invalid.")
        else:
            if not isinstance(value, str):
                raise ApiError(400, f"The {label(name)} must be a string.")
            value = value.strip()
            limit = spec.get("max_value")
            if limit is not None and len(value) > int(limit):
                raise ApiError(
                    400, f"The {label(name)} may not be greater than {limit} characters."
                )
        data[name] = value
    return data


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def to_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
