"""Banatie's service info and API-key endpoints."""

from __future__ import annotations

import secrets
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._core import BanatieCore
from ._parsing import read_body
from ._records import ApiKey
from ._wire import (
    MAX_REFERENCES,
    MAX_UPLOAD_BYTES,
    ORG_ID,
    ORG_SLUG,
    PROJECT_ID,
    PROJECT_KEY_DAYS,
    PROJECT_SLUG,
    UPLOAD_FORMATS,
    VERSION,
    ApiError,
    bad_request,
    not_found,
)

if TYPE_CHECKING:
    from ._records import Principal


class Keys(BanatieCore):
    """Service info and API keys: health, info, bootstrap, create/list/revoke keys."""

    # ================================================================= public endpoints
    async def health(self, request: Request, principal: Principal | None) -> Response:
        return JSONResponse({
            "status": "healthy",
            "timestamp": self.iso(self.now()),
            "uptime": round(self.now(), 3),
            "environment": "sandbox",
            "version": VERSION,
        })

    async def info(self, request: Request, principal: Principal | None) -> Response:
        body: dict[str, Any] = {
            "name": "Banatie API",
            "version": VERSION,
            "endpoints": ["/api/v1/generations", "/api/v1/flows", "/api/v1/images",
                          "/api/v1/live/scopes"],
            "limits": {
                "maxFileSize": MAX_UPLOAD_BYTES,
                "supportedFormats": sorted(UPLOAD_FORMATS.values()),
                "maxReferenceImages": MAX_REFERENCES,
                "requestsPerHour": self.effective_api_limit,
            },
        }
        if principal is not None:
            record = principal.record
            body["keyInfo"] = {
                "type": principal.type,
                "organizationId": ORG_ID,
                "organizationSlug": record.organization_slug if record else ORG_SLUG,
                "projectId": PROJECT_ID,
                "projectSlug": record.project_slug if record else PROJECT_SLUG,
                "expiresAt": self.iso(record.expires) if record else None,
            }
        return JSONResponse(body)

    def _mint(self, kind: str, name: str | None, days: float | None, **slugs: str) -> ApiKey:
        now = self.now()
        record = ApiKey(
            id=str(uuid.uuid4()),
            value="bnt_" + secrets.token_hex(32),
            type=kind,
            name=name,
            created=now,
            expires=None if days is None else now + days * 86400,
            **slugs,
        )
        self.keys[record.id] = record
        return record

    def _key_view(self, record: ApiKey, *, with_value: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": record.id,
            "type": record.type,
            "name": record.name,
            "keyPrefix": record.value[:8] + "…",
            "organizationSlug": record.organization_slug,
            "projectSlug": record.project_slug,
            "projectId": record.project_id,
            "expiresAt": self.iso(record.expires),
            "createdAt": self.iso(record.created),
            "revoked": record.revoked,
        }
        if with_value:
            out["apiKey"] = record.value
        return out

    async def bootstrap(self, request: Request, principal: Principal | None) -> Response:
        if self.keys:
            raise ApiError(403, "FORBIDDEN", "Bootstrap is not allowed: API keys already exist")
        record = self._mint("master", "Initial Master Key", None)
        body = self._key_view(record, with_value=True)
        body["message"] = "Save this key securely: it will not be shown again"
        return JSONResponse(body, status_code=201)

    async def create_key(self, request: Request, principal: Principal | None) -> Response:
        body = await read_body(request)
        kind = body.get("type")
        if kind not in ("master", "project"):
            raise bad_request("type must be master or project")
        if kind == "project" and not body.get("projectId"):
            raise bad_request("projectId is required for project keys")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise bad_request("name must be a string")
        days = body.get("expiresInDays", PROJECT_KEY_DAYS if kind == "project" else None)
        if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float))
                                 or days <= 0):
            raise bad_request("expiresInDays must be a positive number")
        slugs = {
            "organization_slug": str(body.get("organizationSlug") or ORG_SLUG),
            "project_slug": str(body.get("projectSlug") or PROJECT_SLUG),
            "project_id": str(body.get("projectId") or PROJECT_ID),
        }
        record = self._mint(kind, name, days, **slugs)
        return JSONResponse(self._key_view(record, with_value=True), status_code=201)

    async def list_keys(self, request: Request, principal: Principal | None) -> Response:
        keys = sorted(self.keys.values(), key=lambda k: k.created)
        return JSONResponse({"keys": [self._key_view(k, with_value=False) for k in keys]})

    async def revoke_key(self, request: Request, principal: Principal | None) -> Response:
        record = self.keys.get(request.path_params["key_id"])
        if record is None:
            raise not_found("API key", "KEY_NOT_FOUND")
        record.revoked = True
        return JSONResponse({"message": "API key revoked", "id": record.id})
