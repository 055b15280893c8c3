"""Reading Banatie requests: JSON and multipart bodies, fields, paging, derived seeds."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from .. import _http as http
from .._art import _banatie as art
from ._wire import ALIAS_RE, DEFAULT_LIMIT, MAX_LIMIT, TECHNICAL_ALIASES, TEMPLATES, bad_request


# ------------------------------------------------------------------------------ parsing
def derive(*parts: object) -> int:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = repr(part).encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return int.from_bytes(h.digest(), "big") & 0xFFFFFFFF


async def read_body(request: Request) -> dict[str, Any]:
    return await http.json_body(request, bad_request)


def read_prompt(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise bad_request("prompt is required")
    if not isinstance(value, str):
        raise bad_request("prompt must be a string")
    return value.strip()


def read_aspect(value: Any) -> str:
    if value in (None, ""):
        return "1:1"
    if not isinstance(value, str) or value not in art.SIZES:
        raise bad_request(f"aspectRatio must be one of {', '.join(art.SIZES)}")
    return value


def read_bool(value: Any, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{name} must be true or false")


def read_template(options: Any) -> str:
    if options is None:
        return "general"
    if not isinstance(options, dict):
        raise bad_request("enhancementOptions must be an object")
    template = options.get("template") or "general"
    if template not in TEMPLATES:
        raise bad_request(f"enhancementOptions.template must be one of {', '.join(TEMPLATES)}")
    return str(template)


def read_alias(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not ALIAS_RE.match(value):
        raise bad_request(f"{name} must look like @name (letters, digits, _ or -), not {value!r}")
    if value in TECHNICAL_ALIASES:
        raise bad_request(f"{value} is a reserved technical alias and cannot be assigned")
    return value


def read_meta(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("meta must be an object")
    return value


def read_json_field(value: str | None, name: str) -> Any:
    if value in (None, ""):
        return None
    try:
        return json.loads(value)  # type: ignore[arg-type]
    except ValueError:
        raise bad_request(f"{name} must be a JSON string") from None


def read_paging(request: Request) -> tuple[int, int]:
    q = request.query_params
    try:
        limit = int(q.get("limit", DEFAULT_LIMIT))
        offset = int(q.get("offset", 0))
    except ValueError:
        raise bad_request("limit and offset must be whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be from 1 to {MAX_LIMIT}")
    if offset < 0:
        raise bad_request("offset must be 0 or more")
    return limit, offset


_DISPOSITION_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


def read_multipart(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, tuple[str | None, str | None, bytes]]]:
    """``(fields, files)`` of a ``multipart/form-data`` body (stdlib only, no python-multipart)."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    if match is None:
        raise bad_request("multipart/form-data without a boundary")
    delimiter = b"--" + (match[1] or match[2]).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, str | None, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = _part_headers(head.decode("utf-8", "replace").split("\r\n"))
        params = {
            k.lower(): (quoted if quoted is not None else (bare or "").strip())
            for k, quoted, bare in _DISPOSITION_PARAM.findall(
                headers.get("content-disposition", "")
            )
        }
        name = params.get("name")
        if not name:
            continue
        if "filename" in params:
            files[name] = (params["filename"], headers.get("content-type"), data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


def _part_headers(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out
