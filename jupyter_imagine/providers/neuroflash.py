"""The neuroflash image service (``https://app.neuroflash.com/api/image-service``).

Wire facts this module relies on (``providers.md`` §4 and the seed page):

- OAuth2 client credentials: ``POST https://id.neuroflash.com/oauth/v2/token`` (form:
  ``grant_type=client_credentials``, ``client_id``, ``client_secret``, ``scope=openid``) →
  ``{"access_token", "token_type": "Bearer", "expires_in": 14399}``; then
  ``Authorization: Bearer <token>``. An expired token is a 401.
- Everything lives in a workspace: ``/api/image-service/v1/workspaces/{workspaceId}/…``; the id
  comes from ``NEUROFLASH_WORKSPACE_ID`` or ``GET /api/workspace-service/v1/workspaces``.
- ``image-generation-tasks``, ``image-edit-tasks`` and ``image-upscale-tasks`` answer
  ``{images, generationId, description, detail}`` at once: there is no task status to poll, so
  a job goes straight from its submit to ``succeeded`` (``Job.remote_id`` is the
  ``generationId``, which groups the images). Each image's bytes are behind its
  ``_links.content`` URL, which needs the bearer token.
- ``image-models`` is the catalogue (``maxImages``, ``aspectRatios``, ``outputFormats``,
  ``capabilities``, ``allowed``); lists are ``{"page": {…}, "data": […]}`` with 1-based ``page``
  and ``size`` (≤ 200).

Choices (where ``providers.md`` says [I] or [U]):

- **Token**: cached until ``expires_in`` minus a margin (10 % of it, at most 60 s). A 401 from
  any call refreshes the token once and repeats that call once, inside the same provider call
  (that is the auth protocol, not an engine retry: a 401 means nothing was done). One
  ``asyncio.Lock`` makes concurrent calls share one refresh. A second 401 is an
  :class:`~jupyter_imagine.errors.AuthenticationError` naming ``NEUROFLASH_CLIENT_ID`` and
  ``NEUROFLASH_CLIENT_SECRET``. The token and the client secret are registered secrets.
- **Token URL**: the ``token_url`` argument, else ``NEUROFLASH_TOKEN_URL`` (ignored in the
  sandbox, so sandbox credentials never travel elsewhere), else — when the base URL ends with
  ``/neuroflash``, as the sandbox's does (``{root}/neuroflash``) —
  ``{root}/neuroflash-id/oauth/v2/token``, else ``https://id.neuroflash.com/oauth/v2/token``.
- **Sandbox credentials**: the engine gives the sandbox no client id or secret
  (``api_key="sandbox-key"``), so in sandbox mode the sandbox's own service account
  (``jupyter-imagine-sandbox`` / ``sandbox-secret``) is used; the workspace is discovered.
- **Validation against the catalogue**: ``validate()`` runs in the caller's thread and does no
  HTTP; the engine calls :meth:`Neuroflash.prepare` once first, which fetches the catalogue, so
  ``validate()`` makes the static checks (types, ``W:H`` ratios, known parameters for the kind)
  and the catalogue checks before anything is stored. ``submit()`` checks against the catalogue
  again before the POST (fetching it if ``prepare`` could not), so an unknown aspect ratio or
  too many images fail as :class:`~jupyter_imagine.errors.InvalidRequest` listing the allowed
  values, and nothing is sent. Without ``model_id`` the first allowed model (by ``order``) with
  the needed capability is chosen and sent, so what is validated is what runs.
- **Capabilities**: ``text2image`` for ``imagine``, ``image2image`` for ``edit``, ``upscale``
  for ``upscale``; an upscale model lists its factors in ``upscaleFactors`` [I].
- **Errors**: read tolerantly — RFC 9457 problems (``detail``/``title``/``type``), OAuth errors
  (``error``/``error_description``), ``message``, ``errors[].message``. 402, or any answer that
  mentions a quota (other than a 429 about rate), is :class:`~jupyter_imagine.errors.
  QuotaExceeded`; 403 is :class:`~jupyter_imagine.errors.PermissionDenied` (deleting another
  user's image); a content-policy answer is :class:`~jupyter_imagine.errors.ModeratedPrompt`.
- **Images**: ``detail`` (a non-fatal warning such as a partial quota) is kept in
  ``job.extras["detail"]`` and logged; an answer with no images fails the job with it.
- ``_links.content`` gets the bearer token only when it is on the base URL's origin (a
  redirect to storage is followed without it).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import httpx

from .._secrets import get_logger, register
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequest,
    ModeratedPrompt,
    NotFound,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
)
from ..imaging import image_format
from ..models import Balance, Cost, Image, Job, Status, utcnow
from ._base import ChildSpec, ParamSpec, Provider, RemoteJob, Submission, Update, idempotent
from ._timestamps import parse_when

__all__ = ["Neuroflash"]

logger = get_logger(__name__)

CLIENT_ID_VAR = "NEUROFLASH_CLIENT_ID"
CLIENT_SECRET_VAR = "NEUROFLASH_CLIENT_SECRET"
WORKSPACE_VAR = "NEUROFLASH_WORKSPACE_ID"
TOKEN_URL_VAR = "NEUROFLASH_TOKEN_URL"
DEFAULT_TOKEN_URL = "https://id.neuroflash.com/oauth/v2/token"
#: The sandbox's own service account (it is no secret: the sandbox is local and fake).
SANDBOX_CLIENT_ID = "jupyter-imagine-sandbox"
SANDBOX_CLIENT_SECRET = "sandbox-secret"

IMAGE_SERVICE = "/api/image-service/v1/workspaces/{ws}"
USAGE_SERVICE = "/api/usage-service/v1/workspaces/{ws}"
WORKSPACES = "/api/workspace-service/v1/workspaces"
#: Seconds one generation / edit / upscale POST may take (they answer with the images).
TASK_TIMEOUT = 180.0
#: Page size when the client walks a list itself (the service allows up to 200).
PAGE_SIZE = 100
#: Pages ``poll()`` scans for a generation's images when it does not know their ids.
MAX_SCAN_PAGES = 10

#: There is no status lifecycle: tasks answer with their images.
STATUS_MAP: dict[str, Status] = {}

_CAPABILITY = {"imagine": "text2image", "edit": "image2image", "upscale": "upscale"}
_KIND_PARAMS = {
    "imagine": frozenset({"num_images", "aspect_ratio", "output_format", "model_id"}),
    "edit": frozenset({"image_ids", "num_images", "aspect_ratio", "output_format", "model_id"}),
    "upscale": frozenset({"image_id", "upscale_factor", "output_format", "model_id"}),
}
_FORMAT_ALIASES = {"jpg": "jpeg"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


# ------------------------------------------------------------------------------ parameters
class _AspectRatio(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        text = str(value).strip().lower().replace(" ", "") if value is not None else ""
        if text == "auto":
            return text
        parts = text.split(":")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise self.invalid(provider, "look like 16:9 (or 'auto' for an edit)", value)
        return f"{int(parts[0])}:{int(parts[1])}"


class _Format(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        text = str(value).strip().lower().lstrip(".")
        if not text.isalnum():
            raise self.invalid(provider, "be a format name such as png", value)
        return _FORMAT_ALIASES.get(text, text)


class _Ids(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(i, str) and i.strip() for i in items
        ):
            raise self.invalid(provider, "be a non-empty list of image ids", value)
        return [i.strip() for i in items]


class _Id(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise self.invalid(provider, "be an image id", value)
        return value.strip()


# ------------------------------------------------------------------------------ the client
class Neuroflash(Provider):
    """The neuroflash image-service client.

    Kinds: ``imagine`` (``image-generation-tasks``), ``edit`` (``image-edit-tasks``: needs
    ``image_ids``) and ``upscale`` (``image-upscale-tasks``: needs ``image_id``; the prompt may be
    empty). Actions on a succeeded job: ``Edit`` (``prompt=`` required; this job's images, or
    ``index=`` one of them) and ``Upscale`` (``factor=``, default the model's first;
    ``index=`` the image, default 1).

    Args (besides the :class:`Provider` ones):
        token_url: the OAuth token endpoint (default: see the module docstring).
    """

    name: ClassVar[str] = "neuroflash"
    label: ClassVar[str] = "neuroflash"
    env_key: ClassVar[str] = CLIENT_ID_VAR
    default_base_url: ClassVar[str] = "https://app.neuroflash.com"
    sandbox_prefix: ClassVar[str] = "/neuroflash"
    status_map: ClassVar[Mapping[str, Status]] = STATUS_MAP
    extra_env: ClassVar[tuple[str, ...]] = (CLIENT_ID_VAR, CLIENT_SECRET_VAR, WORKSPACE_VAR)
    kinds: ClassVar[tuple[str, ...]] = ("imagine", "edit", "upscale")
    #: neuroflash counts image work in its ``images`` quota (api-docs/usage/quotas: usage type
    #: ``images``, amounts in images): each image a generation, edit or upscale task makes uses
    #: one. neuroflash publishes no dollar price per image for the API (plans are bundles).
    PRICES: ClassVar[Mapping[str, float]] = {"imagine": 1, "edit": 1, "upscale": 1}
    PRICE_UNIT: ClassVar[str | None] = "images"
    max_concurrency: ClassVar[int] = 4
    default_timeout: ClassVar[float] = 300.0
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "num_images": ParamSpec(
            "num_images", type=int, minimum=1,
            help="how many images (default 1; at most the model's maxImages)",
        ),
        "aspect_ratio": _AspectRatio(
            "aspect_ratio",
            help='width:height, one of the model\'s aspectRatios (default 1:1; edits: "auto")',
        ),
        "output_format": _Format(
            "output_format",
            help="jpeg, png or webp: one of the model's outputFormats (default png)",
        ),
        "model_id": ParamSpec(
            "model_id", help="an image-models id, e.g. nano-banana-2 (default: the first allowed)"
        ),
        "image_ids": _Ids("image_ids", help="edit: ids of your images to edit"),
        "image_id": _Id("image_id", help="upscale: the id of your image to upscale"),
        "upscale_factor": ParamSpec(
            "upscale_factor", type=int, minimum=1, help="upscale: one of the model's upscaleFactors"
        ),
    }

    def __init__(self, *, token_url: str | None = None, **kwargs: Any) -> None:
        """:class:`~._base.Provider`'s keywords, plus ``token_url`` (default: the
        ``NEUROFLASH_TOKEN_URL`` variable out of the sandbox, else next to ``base_url``)."""
        super().__init__(**kwargs)
        extra, sandbox = self._extra, self.sandbox
        client_id = extra.get(CLIENT_ID_VAR) or (None if sandbox else self._api_key)
        secret = extra.get(CLIENT_SECRET_VAR)
        if sandbox and not (client_id and secret):
            client_id, secret = SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
        if not client_id or not secret:
            raise ConfigurationError(
                f"neuroflash needs both {CLIENT_ID_VAR} and {CLIENT_SECRET_VAR} (a service "
                "account from the neuroflash app); set them, or unset NEUROFLASH_BASE_URL to "
                "use the sandbox",
                provider=self.name,
            )
        register(secret)
        self._client_id = client_id
        self._client_secret = secret
        self._workspace_id: str | None = extra.get(WORKSPACE_VAR) or None
        override = "" if sandbox else os.environ.get(TOKEN_URL_VAR, "").strip()
        self.token_url = token_url or override or _token_url(self.base_url)
        self._access_token: str | None = None
        self._token_valid_until = 0.0
        self._models: dict[str, dict[str, Any]] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        #: The clock the token cache runs on (``time.monotonic``; tests replace it).
        self._now = time.monotonic

    # ------------------------------------------------------------------ auth
    def auth_headers(self) -> dict[str, str]:
        token = self._access_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _lock(self, name: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # a new loop (tests): locks are bound to their loop
            self._locks = {}
            self._lock_loop = loop
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _token(self, stale: str | None = None) -> str:
        """A valid access token: the cached one, or a new one.

        ``stale`` is a token the service just refused: it is replaced even if it looks valid,
        unless another call already replaced it.
        """
        async with self._lock("token"):
            token = self._access_token
            if token is not None and token != stale:
                if stale is not None or self._now() < self._token_valid_until:
                    return token
            return await self._fetch_token()

    async def _fetch_token(self) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": "openid",
        }
        try:
            response = await self._send("POST", self.token_url, authorized=False, data=form)
        except NotFound as exc:
            raise ConfigurationError(
                f"neuroflash's token endpoint {self.token_url} answered 404 ({_reason(exc)}); "
                f"check {TOKEN_URL_VAR} or NEUROFLASH_BASE_URL",
                provider=self.name,
            ) from None
        except (AuthenticationError, PermissionDenied, InvalidRequest) as exc:
            raise AuthenticationError(
                f"neuroflash refused the client credentials ({exc.status_code}: "
                f"{_reason(exc)}); check {CLIENT_ID_VAR} and {CLIENT_SECRET_VAR}",
                provider=self.name,
                status_code=exc.status_code,
            ) from None
        try:
            body = response.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise ProviderError(
                "neuroflash's token endpoint answered without an access_token",
                provider=self.name,
            ) from None
        register(token)
        try:
            expires_in = float(body.get("expires_in") or 0)
        except (TypeError, ValueError):
            expires_in = 0.0
        margin = min(60.0, expires_in / 10)
        self._access_token = token
        self._token_valid_until = self._now() + max(0.0, expires_in - margin)
        logger.debug("neuroflash: new access token, valid for %.0f s", expires_in)
        return token

    async def _api(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call with the bearer token; on a 401 the token is refreshed and the call repeated
        once. ``bearer=False`` sends no token (URLs on other hosts)."""
        if not kwargs.pop("bearer", True):
            return await self._send(method, url, authorized=False, **kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        token = await self._token()
        try:
            return await self._send(
                method, url, authorized=False,
                headers={**headers, "Authorization": f"Bearer {token}"}, **kwargs,
            )
        except AuthenticationError:
            logger.info("neuroflash: the access token was refused; fetching a new one")
        token = await self._token(stale=token)
        try:
            return await self._send(
                method, url, authorized=False,
                headers={**headers, "Authorization": f"Bearer {token}"}, **kwargs,
            )
        except AuthenticationError as exc:
            self._access_token = None
            raise AuthenticationError(
                f"neuroflash refused a freshly issued access token ({_reason(exc)}); check "
                f"{CLIENT_ID_VAR} and {CLIENT_SECRET_VAR} (the service account may lack access "
                "to this workspace)",
                provider=self.name,
                status_code=exc.status_code,
            ) from None

    async def _workspace(self) -> str:
        """``NEUROFLASH_WORKSPACE_ID``, else the first workspace the account sees (cached)."""
        if self._workspace_id:
            return self._workspace_id
        async with self._lock("workspace"):
            if self._workspace_id:
                return self._workspace_id
            body = (await self._api("GET", WORKSPACES)).json()
            for item in _items(body, "workspaces"):
                ws = item.get("id") or item.get("workspaceId") if isinstance(item, dict) else None
                if ws:
                    self._workspace_id = str(ws)
                    logger.debug("neuroflash: using the first workspace of the account")
                    return self._workspace_id
            raise ConfigurationError(
                f"this neuroflash service account sees no workspace; set {WORKSPACE_VAR}",
                provider=self.name,
            )

    async def _path(self, tail: str, service: str = IMAGE_SERVICE) -> str:
        return service.format(ws=await self._workspace()) + tail

    # ------------------------------------------------------------------ errors
    def error_message(self, response: httpx.Response, body: Any) -> str:
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, str) and error and "error_description" in body:
                described = body.get("error_description")
                return f"{error}: {described}" if described else error
            for key in ("detail", "message", "error_description", "title", "error"):
                value = body.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
            errors = body.get("errors")
            if isinstance(errors, list):
                texts = [
                    str(e.get("message") or e.get("msg") or e) if isinstance(e, dict) else str(e)
                    for e in errors
                ]
                if texts:
                    return "; ".join(texts)
        return super().error_message(response, body)

    def classify_error(self, response: httpx.Response, message: str) -> type[ProviderError] | None:
        code = response.status_code
        kind = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                kind = " ".join(str(body.get(k) or "") for k in ("type", "title", "code"))
        except ValueError:
            pass
        text = f"{kind} {message}".lower()
        if code == 402 or ("quota" in text and not (code == 429 and "rate" in text)):
            return QuotaExceeded
        if code == 400 and any(w in text for w in ("content-policy", "content policy", "moderat")):
            return ModeratedPrompt
        if code == 403:
            return PermissionDenied
        return None

    # ------------------------------------------------------------------ the catalogue
    async def prepare(self) -> None:
        """Load the image-model catalogue, so :meth:`validate` checks aspect ratio, output format
        and ``num_images`` before anything is stored (the engine calls this once)."""
        await self._catalogue()

    async def _catalogue(self) -> dict[str, dict[str, Any]]:
        if self._models is None:
            async with self._lock("models"):
                if self._models is None:
                    self._models = {m["id"]: m for m in await self._all_models() if m.get("id")}
        return self._models

    async def _all_models(self) -> list[dict[str, Any]]:
        path = await self._path("/image-models")
        models: list[dict[str, Any]] = []
        page = 1
        while True:
            body = (await self._api("GET", path, params={"page": page, "size": 200})).json()
            items = [m for m in _items(body, "models") if isinstance(m, dict)]
            models.extend(items)
            if not items or page >= _total_pages(body, page):
                return models
            page += 1

    def _resolve(
        self, models: Mapping[str, dict[str, Any]], kind: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The model ``params`` run on, after checking them against it; raises InvalidRequest."""
        capability = _CAPABILITY[kind]
        fit = sorted(
            (m for m in models.values() if capability in (m.get("capabilities") or [])),
            key=lambda m: (m.get("order") is None, m.get("order") or 0),
        )
        model_id = params.get("model_id")
        if model_id is None:
            usable = [m for m in fit if m.get("allowed", True)]
            if not usable:
                raise InvalidRequest(
                    f"no neuroflash model in this workspace can do {capability}", provider=self.name
                )
            model = usable[0]
        else:
            model = models.get(model_id)
            names = ", ".join(m["id"] for m in fit if m.get("allowed", True)) or "none"
            if model is None:
                raise InvalidRequest(
                    f"unknown neuroflash model {model_id!r}; for {capability} use one of: {names}",
                    provider=self.name,
                )
            if model not in fit:
                raise InvalidRequest(
                    f"neuroflash model {model_id!r} cannot do {capability}; use one of: {names}",
                    provider=self.name,
                )
            if model.get("allowed") is False:
                raise InvalidRequest(
                    f"neuroflash model {model_id!r} is not allowed in this workspace; use one "
                    f"of: {names}",
                    provider=self.name,
                )
        mid = model["id"]
        ratios = list(model.get("aspectRatios") or [])
        ratio = params.get("aspect_ratio")
        if ratio is not None and ratios:
            allowed = ratios + (["auto"] if kind == "edit" else [])
            if ratio not in allowed:
                raise InvalidRequest(
                    f"{mid} does not offer aspect ratio {ratio}; choose one of: "
                    f"{', '.join(allowed)}",
                    provider=self.name,
                )
        formats = list(model.get("outputFormats") or [])
        fmt = params.get("output_format")
        if fmt is not None and formats and fmt not in formats:
            raise InvalidRequest(
                f"{mid} does not offer output format {fmt}; choose one of: {', '.join(formats)}",
                provider=self.name,
            )
        count = params.get("num_images")
        top = model.get("maxImages")
        if count is not None and isinstance(top, int) and count > top:
            raise InvalidRequest(
                f"{mid} makes at most {top} images per request, not {count}", provider=self.name
            )
        factor = params.get("upscale_factor")
        factors = _factors(model)
        if kind == "upscale" and factor is not None and factors and factor not in factors:
            raise InvalidRequest(
                f"{mid} upscales by {', '.join(map(str, factors))}, not {factor}",
                provider=self.name,
            )
        return model

    # ------------------------------------------------------------------ jobs
    def validate(self, kind: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Static checks (and the catalogue's, once it is cached); see the module docstring."""
        if kind != "upscale":
            super().validate(kind, prompt, {})
        allowed = _KIND_PARAMS.get(kind, _KIND_PARAMS["imagine"])
        out: dict[str, Any] = {}
        for key, value in params.items():
            name = key.replace("-", "_")
            spec = self.params.get(name)
            if spec is None or name not in allowed:
                raise InvalidRequest(
                    f"unknown parameter {key!r} for a neuroflash {kind} job; it accepts: "
                    f"{', '.join(sorted(allowed))}",
                    provider=self.name,
                )
            if value is not None:
                out[name] = spec.coerce(value, self.name)
        if kind == "edit" and not out.get("image_ids"):
            raise InvalidRequest(
                "a neuroflash edit needs image_ids=[…] (ids of your images; upload_image() "
                "makes one from a file or URL)",
                provider=self.name,
            )
        if kind == "upscale" and not out.get("image_id"):
            raise InvalidRequest(
                "a neuroflash upscale needs image_id=… (the id of one of your images)",
                provider=self.name,
            )
        if out.get("aspect_ratio") == "auto" and kind != "edit":
            raise InvalidRequest(
                "aspect_ratio 'auto' is only for edits; give one like 16:9", provider=self.name
            )
        if self._models is not None:
            self._resolve(self._models, kind, out)
        return out

    def actions(self, job: Job) -> tuple[str, ...]:
        if job.status is not Status.SUCCEEDED or not _image_ids(job):
            return ()
        return ("Edit", "Upscale")

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        ids = _image_ids(job)
        if not ids:
            raise InvalidRequest(f"job {job.id} has no neuroflash images to work on")
        index = kwargs.pop("index", None)
        if index is not None:
            if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= len(ids):
                raise InvalidRequest(f"index must be 1 … {len(ids)}, not {index!r}")
        inherited = {"output_format": job.params["output_format"]} if job.params.get(
            "output_format"
        ) else {}
        if label == "Edit":
            prompt = kwargs.pop("prompt", None)
            if not isinstance(prompt, str) or not prompt.strip():
                raise InvalidRequest('Edit needs a prompt: job.act("Edit", prompt="…")')
            params = self._child_params(
                "edit", kwargs, ("num_images", "aspect_ratio", "output_format", "model_id")
            )
            params = {
                **inherited, **params, "image_ids": [ids[index - 1]] if index else list(ids)
            }
            if self._models is not None:
                self._resolve(self._models, "edit", params)
            return ChildSpec("edit", prompt.strip(), params)
        if label == "Upscale":
            factor = kwargs.pop("factor", None)
            if factor is None:
                factor = kwargs.pop("upscale_factor", None)
            params = self._child_params("upscale", kwargs, ("output_format", "model_id"))
            params = {**inherited, **params, "image_id": ids[(index or 1) - 1]}
            if factor is not None:
                params["upscale_factor"] = self.params["upscale_factor"].coerce(factor, self.name)
            if self._models is not None:
                self._resolve(self._models, "upscale", params)
            return ChildSpec("upscale", job.prompt, params)
        raise InvalidRequest(f"neuroflash has no action {label!r}; it offers Edit and Upscale")

    def _child_params(
        self, kind: str, kwargs: dict[str, Any], names: Sequence[str]
    ) -> dict[str, Any]:
        extra = sorted(k for k, v in kwargs.items() if v is not None and k not in names)
        if extra:
            takes = ("prompt" if kind == "edit" else "factor", "index", *names)
            raise InvalidRequest(
                f"{kind.capitalize()} takes no {', '.join(extra)} argument; it takes: "
                f"{', '.join(takes)}"
            )
        return {
            k: self.params[k].coerce(v, self.name) for k, v in kwargs.items() if v is not None
        }

    async def submit(self, job: Job, parent: Job | None) -> Submission:
        if job.kind not in _CAPABILITY:
            raise InvalidRequest(f"neuroflash cannot start a {job.kind!r} job", provider=self.name)
        params = job.params
        model = self._resolve(await self._catalogue(), job.kind, params)
        body: dict[str, Any]
        if job.kind == "upscale":
            factor = params.get("upscale_factor")
            if factor is None:
                factors = _factors(model)
                if not factors:
                    raise InvalidRequest(
                        f"give upscale_factor: {model['id']} lists no upscale factors",
                        provider=self.name,
                    )
                factor = factors[0]
            body = {"imageId": params["image_id"], "modelId": model["id"], "upscaleFactor": factor}
            endpoint = "/image-upscale-tasks"
        else:
            body = {"prompt": job.prompt}
            if job.kind == "edit":
                body["imageIds"] = list(params["image_ids"])
            for name, wire in (("num_images", "numImages"), ("aspect_ratio", "aspectRatio")):
                if params.get(name) is not None:
                    body[wire] = params[name]
            body["modelId"] = model["id"]
            endpoint = "/image-generation-tasks" if job.kind == "imagine" else "/image-edit-tasks"
        if params.get("output_format"):
            body["outputFormat"] = params["output_format"]
        path = await self._path(endpoint)
        response = await self._api("POST", path, json=body, timeout=TASK_TIMEOUT)
        data = _json(response)
        if not isinstance(data, dict):
            raise ProviderError(
                f"neuroflash answered the {job.kind} with something unexpected: {str(data)[:120]}",
                provider=self.name,
            )
        images = [i for i in data.get("images") or [] if isinstance(i, dict)]
        generation = data.get("generationId") or next(
            (i.get("generationId") for i in images if i.get("generationId")), None
        )
        if not generation:
            raise ProviderError(
                "neuroflash answered without a generationId or images", provider=self.name
            )
        return Submission(
            remote_id=str(generation), raw=data, update=self._update(data, images, str(generation))
        )

    def _update(
        self, data: dict[str, Any], images: list[dict[str, Any]], generation: str
    ) -> Update:
        """The finished (or failed, when no images came back) update for a task answer."""
        detail = data.get("detail")
        extras: dict[str, Any] = {"generation_id": generation}
        if data.get("description"):
            extras["description"] = data["description"]
        if detail:
            extras["detail"] = detail
            logger.warning("neuroflash generation %s: %s", generation, _detail_text(detail))
        if not images:
            reason = _detail_text(detail) or "neuroflash returned no images"
            return Update(
                status=Status.FAILED,
                error=reason,
                error_type="QuotaExceeded" if "quota" in reason.lower() else "ProviderError",
                extras=extras,
                raw=data,
            )
        extras["image_ids"] = [str(i.get("id")) for i in images if i.get("id")]
        many = len(images) > 1
        return Update(
            status=Status.SUCCEEDED,
            progress=100.0,
            images=[
                Image(
                    url=self._content_url(i),
                    width=_int(i.get("imageWidth")),
                    height=_int(i.get("imageHeight")),
                    index=n + 1 if many else None,
                )
                for n, i in enumerate(images)
            ],
            extras=extras,
            raw=data,
        )

    def _content_url(self, image: Mapping[str, Any]) -> str | None:
        link = (image.get("_links") or {}).get("content") if isinstance(
            image.get("_links"), dict
        ) else None
        if isinstance(link, dict):
            link = link.get("href")
        if isinstance(link, str) and link:
            return link if link.startswith(("http://", "https://")) else str(
                httpx.URL(self.base_url + "/").join(link)
            )
        if self._workspace_id and image.get("id"):  # [I] the documented path's likely shape
            return (
                self.base_url + IMAGE_SERVICE.format(ws=self._workspace_id)
                + f"/images/{image['id']}/content"
            )
        return None

    async def poll(self, job: Job) -> Update:
        """For a job resumed after its submit: its generation's images, looked up again."""
        ids = _image_ids(job)
        found: list[dict[str, Any]] = []
        if ids:
            for image_id in ids:
                try:
                    found.append(await self.image(image_id))
                except NotFound:
                    continue
        else:
            path = await self._path("/images")
            for page in range(1, MAX_SCAN_PAGES + 1):
                body = (await self._api(
                    "GET", path, params={"page": page, "size": PAGE_SIZE}
                )).json()
                items = [i for i in _items(body, "images") if isinstance(i, dict)]
                found.extend(i for i in items if str(i.get("generationId")) == job.remote_id)
                if not items or page >= _total_pages(body, page):
                    break
        if not found:
            return Update(
                status=Status.FAILED,
                error=f"neuroflash has no images of generation {job.remote_id} (deleted?)",
                error_type="NotFound",
            )
        data = {"images": found, "generationId": job.remote_id}
        return self._update(data, found, str(job.remote_id))

    async def download(self, url: str) -> bytes:
        """The bytes behind ``_links.content`` (with the bearer token on the service's origin)."""
        ours = _origin(url) == _origin(self.base_url)
        response = await self._api("GET", url, bearer=ours, follow_redirects=True)
        return response.content

    async def remote_history(self, *, since: Any = None) -> AsyncIterator[list[RemoteJob]]:
        """Pages of the workspace's images (newest first), grouped by ``generationId``.

        A generation cut by a page boundary is held back until the next page completes it.
        ``parent_remote_id`` of an edit or upscale is set when its input was already seen.
        """
        cutoff = parse_when(since)
        path = await self._path("/images")
        seen: dict[str, str] = {}
        carry: list[dict[str, Any]] = []
        page = 1
        while True:
            body = (await self._api("GET", path, params={"page": page, "size": PAGE_SIZE})).json()
            items = [i for i in _items(body, "images") if isinstance(i, dict)]
            last = not items or page >= _total_pages(body, page)
            if cutoff is not None:
                fresh = [i for i in items if (parse_when(i.get("createdAt")) or cutoff) >= cutoff]
                last = last or len(fresh) < len(items)
                items = fresh
            groups: dict[str, list[dict[str, Any]]] = {}
            for item in carry + items:
                groups.setdefault(str(item.get("generationId") or item.get("id")), []).append(item)
                seen[str(item.get("id"))] = str(item.get("generationId") or item.get("id"))
            carry = []
            if not last and groups:
                tail = next(reversed(groups))
                carry = groups.pop(tail)
            if groups:
                yield [self._remote_job(gid, group, seen) for gid, group in groups.items()]
            if last:
                return
            page += 1

    def _remote_job(
        self, generation: str, group: list[dict[str, Any]], seen: Mapping[str, str]
    ) -> RemoteJob:
        first = group[0]
        inputs = [str(i) for i in first.get("inputImageIds") or []]
        prompt = str(first.get("prompt") or "")
        parameters = first.get("parameters") if isinstance(first.get("parameters"), dict) else {}
        if inputs and not prompt:
            kind = "upscale"
        elif inputs:
            kind = "edit"
        else:
            kind = "imagine"
        params: dict[str, Any] = {}
        if first.get("model"):
            params["model_id"] = first["model"]
        for wire, name in (
            ("aspectRatio", "aspect_ratio"),
            ("outputFormat", "output_format"),
            ("numImages", "num_images"),
            ("upscaleFactor", "upscale_factor"),
        ):
            if parameters.get(wire) is not None:
                params[name] = parameters[wire]
        if kind == "edit":
            params["image_ids"] = inputs
        elif kind == "upscale":
            params["image_id"] = inputs[0]
        parent = next((seen[i] for i in inputs if i in seen), None)
        return RemoteJob(
            remote_id=generation,
            kind=kind,
            prompt=prompt,
            update=self._update({"generationId": generation, "images": group}, group, generation),
            params=params,
            parent_remote_id=parent if parent != generation else None,
            created_at=parse_when(first.get("createdAt")),
        )

    # ------------------------------------------------------------------ the service's own calls
    @idempotent
    async def models(self) -> list[dict[str, Any]]:
        """The ``image-models`` catalogue (every page); also refreshes the cached copy."""
        models = await self._all_models()
        self._models = {m["id"]: m for m in models if m.get("id")}
        return models

    @classmethod
    def price_item(cls, kind: str, params: Mapping[str, Any]) -> tuple[str, float] | None:
        """One image quota unit per image asked for: ``num_images`` (default 1); an upscale
        makes one."""
        count = params.get("num_images") if kind != "upscale" else 1
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            count = 1
        return (kind, float(count))

    @classmethod
    def stated_cost(cls, record: Mapping[str, Any]) -> Cost | None:
        """The images a succeeded task answer lists (fewer than asked when the quota ran out,
        see its ``detail``): what it took from the ``images`` quota."""
        raw = record.get("raw")
        images = raw.get("images") if isinstance(raw, Mapping) else None
        if str(record.get("status") or "") != "succeeded" or not isinstance(images, list):
            return super().stated_cost(record)
        return cls._cost(float(len(images)), "provider")

    @idempotent
    async def balance(self) -> Balance | None:
        """The workspace's ``images`` quota (one :meth:`quotas` request): ``images`` is its
        ``availableAmount``, ``images_today`` what the daily limit leaves and ``images_month``
        what the monthly limit (with bonus and spillover) leaves; the limits beside them; the
        daily limit resets at midnight UTC (neuroflash's FAQ)."""
        quota = next((q for q in await self.quotas("images")
                      if q.get("usageTypeKey") in (None, "images")), None)
        if quota is None:
            raise ProviderError(
                "neuroflash reported no 'images' quota for this workspace; check "
                f"{WORKSPACE_VAR} or the workspace's plan", provider=self.name,
            )
        return _quota_balance(self.name, quota)

    def quota_message(self, answer: str) -> str:
        return (
            f"neuroflash's image quota for this workspace is used up ({answer}); the daily "
            "limit resets at midnight UTC, the monthly one with the next billing period, or "
            "upgrade the plan in the neuroflash app"
        )

    @idempotent
    async def quotas(self, usage_type: str | None = "images") -> list[dict[str, Any]]:
        """The workspace's quotas (``usageTypeKey``, ``availableAmount`` …).

        Args:
            usage_type: the ``usageTypeKey`` to ask for (default ``"images"``; ``None``: all).
        """
        query = {"usageTypeKey": usage_type} if usage_type else None
        body = (await self._api("GET", await self._path("/quotas", USAGE_SERVICE),
                                params=query)).json()
        return [q for q in _items(body, "quotas") if isinstance(q, dict)]

    @idempotent
    async def workspaces(self) -> list[dict[str, Any]]:
        """The workspaces this service account belongs to."""
        return [w for w in _items((await self._api("GET", WORKSPACES)).json(), "workspaces")
                if isinstance(w, dict)]

    @idempotent
    async def images(self, page: int = 1, size: int = 20) -> dict[str, Any]:
        """One page of the workspace's images: ``{"page": {…}, "data": [image, …]}``.

        Args:
            page: 1-based page number (default 1).
            size: images per page, 1–200 (default 20).
        """
        if not (isinstance(page, int) and page >= 1 and isinstance(size, int)
                and 1 <= size <= 200):
            raise InvalidRequest(
                f"page must be ≥ 1 and size 1–200, not page={page!r}, size={size!r}",
                provider=self.name,
            )
        path = await self._path("/images")
        return _json(await self._api("GET", path, params={"page": page, "size": size}))

    @idempotent
    async def image(self, image_id: str) -> dict[str, Any]:
        """One image's metadata (``_links.content`` is where its bytes are)."""
        path = await self._path(f"/images/{_segment(image_id)}")
        return _json(await self._api("GET", path))

    async def delete_image(self, image_id: str) -> None:
        """Delete one of your images. Raises PermissionDenied for another user's image."""
        path = await self._path(f"/images/{_segment(image_id)}")
        try:
            await self._api("DELETE", path)
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"neuroflash refused to delete image {image_id}: only its creator "
                f"(createdByUserId) or a workspace admin may delete it ({_reason(exc)})",
                provider=self.name,
                status_code=exc.status_code,
            ) from None

    async def upload_image(self, source: str | bytes | Path) -> dict[str, Any]:
        """Add an image to the workspace; returns its image object (its ``id`` feeds edits).

        Args:
            source: an ``http(s)`` URL or ``data:`` URI (sent as is), image bytes or a file path
                (sent as a ``data:`` URI).
        """
        if isinstance(source, Path) or (
            isinstance(source, str) and not source.startswith(("http://", "https://", "data:"))
        ):
            path = Path(source).expanduser()
            if not path.is_file():
                raise InvalidRequest(
                    f"upload_image takes a URL, a data: URI, bytes or a file path; {source!r} is "
                    "none of these",
                    provider=self.name,
                )
            source = path.read_bytes()
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            mime = _MIME.get(image_format(data) or "", None)
            if mime is None:
                raise InvalidRequest(
                    "upload_image: the bytes are not a PNG, JPEG, WebP or GIF image",
                    provider=self.name,
                )
            source = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        path_ = await self._path("/images")
        return _json(await self._api("POST", path_, json={"imageUrl": source}))


# ------------------------------------------------------------------------------ helpers
def _token_url(base_url: str) -> str:
    if base_url.rstrip("/").endswith("/neuroflash"):
        return base_url.rstrip("/")[: -len("/neuroflash")] + "/neuroflash-id/oauth/v2/token"
    return DEFAULT_TOKEN_URL


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    return (parsed.scheme, parsed.host, parsed.port)


def _segment(value: str) -> str:
    if not isinstance(value, str) or not value.strip() or "/" in value:
        raise InvalidRequest(f"not a neuroflash image id: {value!r}", provider="neuroflash")
    return value.strip()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(
            f"neuroflash answered {response.status_code} with a body that is not JSON",
            provider="neuroflash",
        ) from None


def _quota_balance(provider: str, quota: Mapping[str, Any]) -> Balance:
    """A :class:`Balance` from one quota entry (see :meth:`Neuroflash.balance`)."""

    def number(name: str) -> float | None:
        value = quota.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    amounts: dict[str, float] = {}
    limits: dict[str, float] = {}
    available = number("availableAmount")
    daily, used_daily = number("limitAmountDaily"), number("usedAmountDaily")
    monthly, used = number("limitAmount"), number("usedAmount")
    extra = (number("bonusAmount") or 0.0) + (number("spilloverAmount") or 0.0)
    if daily is not None and used_daily is not None:
        amounts["images_today"], limits["images_today"] = max(0.0, daily - used_daily), daily
    if monthly is not None and used is not None:
        amounts["images_month"] = max(0.0, monthly + extra - used)
        limits["images_month"] = monthly + extra
    if available is None:
        available = min(amounts.values()) if amounts else None
    if available is None:
        raise ProviderError(f"neuroflash's quota entry has no amounts: {str(quota)[:80]}",
                            provider=provider)
    amounts = {"images": available, **amounts}
    now = utcnow()
    midnight = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)
    return Balance(provider, amounts, now, limits=limits,
                   resets_at=midnight if "images_today" in amounts else None)


def _items(body: Any, *names: str) -> list[Any]:
    """The entries of a list answer, whatever the envelope (``data``, ``content``, …)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("data", "content", "items", "results", *names):
            value = body.get(key)
            if isinstance(value, list):
                return value
    return []


def _total_pages(body: Any, current: int) -> int:
    page = body.get("page") if isinstance(body, dict) else None
    if isinstance(page, dict):
        total = page.get("totalPages")
        if isinstance(total, int):
            return total
    return current  # unknown: stop here


def _image_ids(job: Job) -> list[str]:
    ids = job.extras.get("image_ids")
    if isinstance(ids, list) and ids:
        return [str(i) for i in ids]
    images = job.raw.get("images") if isinstance(job.raw, dict) else None
    if isinstance(images, list):
        return [str(i["id"]) for i in images if isinstance(i, dict) and i.get("id")]
    return []


def _factors(model: Mapping[str, Any]) -> list[int]:
    for key in ("upscaleFactors", "upscale_factors", "supportedUpscaleFactors"):
        value = model.get(key)
        if isinstance(value, list):
            return [int(v) for v in value if isinstance(v, (int, float, str)) and str(v).isdigit()]
    return []


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("detail") or detail.get("code") or "")
    return str(detail) if detail else ""


def _reason(exc: BaseException) -> str:
    """The provider's words inside one of :meth:`Provider._send`'s messages, without the code.

    Those read ``neuroflash answered 403: <words>`` or
    ``neuroflash rejected the API key (401: <words>); check …``.
    """
    text = str(exc)
    match = re.search(r"(?:answered|rejected the API key \()\s*\d{3}: (.*)", text)
    if match is None:
        return text
    words = match[1]
    if "rejected the API key (" in text:
        words = re.sub(r"\); check \S+$", "", words)
    return words.strip()


