"""Blockade Labs Skybox AI (``https://backend.blockadelabs.com/api/v1``): 360° skyboxes.

Wire facts this module relies on (``providers.md`` §3 and the seed page):

- Auth by the ``x-api-key`` header (the service also takes an ``api_key`` query/form field; we
  never put the key in a URL, so no URL we log or store can carry it).
- ``POST /skybox`` answers the generation object itself; ``GET /imagine/requests/{id}`` wraps it
  in ``{"request": …}`` (the seed page shows ``{"response": …}``: both are accepted everywhere).
- Status strings ``pending`` → ``dispatched`` → ``processing`` → ``complete``, or ``abort``
  (cancelled) / ``error`` with ``error_message``; ``queue_position`` while waiting. There is no
  progress percentage: progress is 0 / 10 / 50 / 100 by status.
- The finished object has ``file_url`` (the 2:1 equirectangular panorama), ``thumb_url`` and
  ``depth_map_url`` → images with roles ``image``, ``thumbnail`` and ``depth``.
- Errors are ``{"error": "..."}`` (Laravel's ``{"message": …}`` is read too).
- Blockade's own SDK polls every 3 s: ``poll_interval = (3.0, 10.0)``.

Job kinds: ``imagine`` and ``skybox`` both make a skybox (``Job.kind`` is ``"skybox"``). With
``generator="stable-skybox"`` (see :meth:`Blockade.generators`) the job goes through the legacy
``POST /imagine/requests`` API instead; every other parameter is then one of that generator's
``params``, checked against them (required fields, ``max_value`` lengths, int ranges, select
options). Actions on a finished skybox: ``Remix`` (child kind ``remix``: a new prompt on the same
style, sent with ``remix_imagine_id``) and ``Export`` (child kind ``export``: JPG by default, or
``type="png"``, ``"cube-map"``, ``"hdri"``, ``"exr"``, ``"depth"``, ``"video"`` … or
``type_id=1..9``).

Length limits are checked before anything is sent: the prompt against the style's ``"max-char"``
and the negative text against its ``"negative-text-max-char"`` (or the generator's
``max_value``). The style catalogue and the generators are fetched once and cached on the
provider (the engine calls :meth:`Blockade.prepare` before the first job), so
:meth:`Blockade.validate` checks them before the job is even stored, and :meth:`Blockade.submit`
checks them again (fetching them first if needed) before the POST.
When no ``skybox_style_id`` is given the first style of the catalogue is used.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from .._secrets import get_logger
from ..errors import (
    InvalidRequest,
    ModeratedPrompt,
    NotFound,
    ProviderError,
    QuotaExceeded,
)
from ..models import Cost, Image, Job, Status
from ._base import (
    ChildSpec,
    ParamSpec,
    Provider,
    RemoteJob,
    Submission,
    Update,
    idempotent,
    new_prompt,
)
from ._timestamps import parse_when

__all__ = ["EXPORT_TYPES", "STATUS_MAP", "Blockade"]

logger = get_logger(__name__)

API = "/api/v1"

#: Blockade's status strings → the five statuses.
STATUS_MAP: dict[str, Status] = {
    "pending": Status.QUEUED,
    "dispatched": Status.RUNNING,
    "processing": Status.RUNNING,
    "complete": Status.SUCCEEDED,
    "abort": Status.CANCELLED,
    "error": Status.FAILED,
}
#: Progress shown per status (the API reports none).
PROGRESS: dict[str, float] = {"pending": 0.0, "dispatched": 10.0, "processing": 50.0,
                              "complete": 100.0}

#: Export types by id: ``(name, key)`` as ``GET /skybox/export`` lists them.
EXPORT_TYPES: dict[int, tuple[str, str]] = {
    1: ("JPG", "equirectangular-jpg"),
    2: ("PNG", "equirectangular-png"),
    3: ("Cube Map", "cube-map-png"),
    4: ("HDRI HDR", "hdri-hdr"),
    5: ("HDRI EXR", "hdri-exr"),
    6: ("Depth Map", "depth-map-png"),
    7: ("Video Landscape", "video-landscape-mp4"),
    8: ("Video Portrait", "video-portrait-mp4"),
    9: ("Video Square", "video-square-mp4"),
}
_EXPORT_ALIASES: dict[str, int] = {
    "jpg": 1, "jpeg": 1, "equirectangular": 1, "png": 2, "cube": 3, "cubemap": 3, "cube-map": 3,
    "cube map": 3, "cube_map": 3, "hdri": 4, "hdr": 4, "exr": 5, "depth": 6, "depth-map": 6,
    "depth map": 6, "depth_map": 6, "video": 7, "landscape": 7, "video-landscape": 7,
    "portrait": 8, "video-portrait": 8, "square": 9, "video-square": 9,
}
for _id, (_name, _key) in EXPORT_TYPES.items():
    _EXPORT_ALIASES[_name.lower()] = _id
    _EXPORT_ALIASES[_key] = _id

#: Requests per ``myRequests`` page when pulling the remote history (the API's maximum).
HISTORY_PAGE = 100

REMIX = "Remix"
EXPORT = "Export"
SKYBOX_ACTIONS = (REMIX, EXPORT)
SEED_MAX = 2147483647
INIT_STRENGTH_MAX = 0.97

#: Fields a finished object carries that are worth keeping on the job.
_EXTRAS = (
    "obfuscated_id", "seed", "skybox_style_id", "skybox_style_name", "title", "remix_imagine_id",
    "remix_obfuscated_id", "generator", "type", "type_id", "skybox_obfuscated_id",
)
#: Parameters that only the current /skybox API takes (not a legacy generator).
_SKYBOX_ONLY = ("skybox_style_id", "enhance_prompt", "remix_imagine_id", "control_image",
                "control_model", "init_image", "init_strength", "return_depth_hq")


@dataclass(frozen=True)
class _Range(ParamSpec):
    """A number parameter with inclusive bounds ``low`` … ``high`` (``None``: open)."""

    low: float | None = None
    high: float | None = None

    def coerce(self, value: Any, provider: str) -> Any:
        if isinstance(value, bool):
            raise self.invalid(provider, f"be {self.type.__name__}", value)
        low, high = self.low, self.high
        spec = ParamSpec(self.name, self.type)
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        number = spec.coerce(value, provider)
        if (low is not None and number < low) or (high is not None and number > high):
            raise self.invalid(provider, f"be {_bounds(low, high)}", number)
        return number


class _ImageSource(ParamSpec):
    """An image given as an http(s) URL, a ``data:`` URI / base64 text, or a local file path."""

    def coerce(self, value: Any, provider: str) -> Any:
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(
                f"{provider} parameter {self.name!r} must be an image URL, a data: URI or the "
                f"path of an image file, not {type(value).__name__}",
                provider=provider,
            )
        text = value.strip()
        if text.startswith(("http://", "https://", "data:")):
            return text
        if os.path.isfile(os.path.expanduser(text)):
            return str(Path(text).expanduser().resolve())
        if len(text) > 256:  # long text: base64 as is
            return text
        raise InvalidRequest(
            f"{provider} parameter {self.name!r}: no image file at {text!r}; give a path, an "
            "http(s) URL or a data: URI",
            provider=provider,
        )


class _Url(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        text = str(value).strip() if isinstance(value, str) else ""
        if not text.startswith(("http://", "https://")):
            raise self.invalid(provider, "be an http(s) URL", value)
        return text


#: Blockade's published credit prices, by price key: a Model 4 skybox costs 3 credits in its
#: Standard variant and 6 in Enhanced (api-documentation.blockadelabs.com, skybox page). Nothing
#: is published for Model 3 skyboxes, remixes or exports: they are priced only by the user's
#: override (keys ``skybox``, ``remix``, ``export``), else NA. No dollar price per credit is
#: published for the API, so ``usd`` stays NA.
BLOCKADE_CREDITS: Mapping[str, float] = {"model4_standard": 3, "model4_enhanced": 6}
#: Blockade's Model 4 variants, by the words their names contain.
BLOCKADE_VARIANT_CREDITS: Mapping[str, float] = {"standard": 3, "enhanced": 6}
_VARIANT_FIELDS = ("variant", "variant_id", "variant_name", "model_variant", "quality")


class Blockade(Provider):
    """The Blockade Labs Skybox API client. Actions on a finished skybox: Remix, Export."""

    name: ClassVar[str] = "blockade"
    label: ClassVar[str] = "Blockade Labs"
    env_key: ClassVar[str] = "BLOCKADE_API_KEY"
    default_base_url: ClassVar[str] = "https://backend.blockadelabs.com"
    sandbox_prefix: ClassVar[str] = "/blockade"
    status_map: ClassVar[Mapping[str, Status]] = STATUS_MAP
    max_concurrency: ClassVar[int] = 8
    poll_interval: ClassVar[tuple[float, float]] = (3.0, 10.0)
    default_timeout: ClassVar[float] = 900.0
    kinds: ClassVar[tuple[str, ...]] = ("imagine", "skybox")
    PRICES: ClassVar[Mapping[str, float]] = BLOCKADE_CREDITS
    PRICE_UNIT: ClassVar[str | None] = "credits"
    PRICE_KEYS: ClassVar[tuple[str, ...]] = ("skybox", "remix", "export")
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "skybox_style_id": ParamSpec(
            "skybox_style_id", int,
            help="style id from client('blockade').styles() (default: the first style)",
        ),
        "negative_text": ParamSpec("negative_text", help="what to keep out of the skybox"),
        "enhance_prompt": ParamSpec(
            "enhance_prompt", bool, help="let Blockade rewrite the prompt (default false)"
        ),
        "seed": _Range(
            "seed", int, low=0, high=SEED_MAX, help="0 (default) = random, else 1–2147483647"
        ),
        "remix_imagine_id": _Range(
            "remix_imagine_id", int, low=1, help="id of a skybox to remix (the Remix action)"
        ),
        "control_image": _ImageSource(
            "control_image", help="structure to follow: image path, http(s) URL or data: URI"
        ),
        "control_model": ParamSpec(
            "control_model", choices=("remix", "sketch", "scribble"),
            help="how control_image is read: remix (default), or the older sketch / scribble",
        ),
        "init_image": _ImageSource(
            "init_image", help="equirectangular start image: path, http(s) URL or data: URI"
        ),
        "init_strength": _Range(
            "init_strength", float, low=0.0, high=INIT_STRENGTH_MAX,
            help="how much init_image shows, 0–0.97 (sent only with init_image)",
        ),
        "return_depth_hq": ParamSpec(
            "return_depth_hq", bool, help="a high-quality depth map (default false)"
        ),
        "webhook_url": _Url("webhook_url", help="Blockade posts each status change here"),
        "generator": ParamSpec(
            "generator",
            help="use the legacy imagine API with this generator (e.g. stable-skybox); other "
            "parameters are then that generator's params",
        ),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._styles: list[dict[str, Any]] | None = None
        self._generators: list[dict[str, Any]] | None = None
        self._lock: asyncio.Lock | None = None

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key} if self._api_key else {}

    def job_kind(self, kind: str) -> str:
        """Both ``imagine`` and ``skybox`` start a ``skybox`` job."""
        return "skybox" if kind in ("imagine", "skybox") else kind

    # --------------------------------------------------------------- errors
    def classify_error(self, response: httpx.Response, message: str) -> type[ProviderError] | None:
        lowered = message.lower()
        if any(w in lowered for w in ("inappropriate", "banned", "moderat", "nsfw")):
            return ModeratedPrompt
        if any(w in lowered for w in ("credit", "quota", "insufficient", "balance")):
            return QuotaExceeded
        if response.status_code == 404:
            return NotFound
        return None

    # --------------------------------------------------------------- validation
    @classmethod
    def price_item(cls, kind: str, params: Mapping[str, Any]) -> tuple[str, float] | None:
        """A Model 4 variant named in ``params`` (``variant_id`` …, see
        :data:`BLOCKADE_CREDITS`) → ``model4_<variant>``; else the kind (``skybox`` for
        ``imagine``), which nothing publishes."""
        for name in _VARIANT_FIELDS:
            text = str(params.get(name) or "").lower()
            for word in BLOCKADE_VARIANT_CREDITS:
                if word in text:
                    return (f"model4_{word}", 1.0)
        return ("skybox" if kind in ("imagine", "skybox") else kind, 1.0)

    @classmethod
    def cost(cls, record: Mapping[str, Any]) -> Cost | None:
        """As the base rule, with a Model 4 variant read from the payload too."""
        params = dict(record.get("params") or {})
        for source in (record.get("raw"), record.get("extras")):
            if isinstance(source, Mapping):
                for name in _VARIANT_FIELDS:
                    if source.get(name) is not None:
                        params.setdefault(name, source[name])
        return super().cost({**record, "params": params})

    def quota_message(self, answer: str) -> str:
        return (
            f"Blockade Labs has not enough credits for this skybox ({answer}); buy credits or "
            "upgrade the plan in your Blockade Labs account, or wait for the plan to renew"
        )

    def validate(self, kind: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The normalized params; raises :class:`InvalidRequest` on anything Blockade refuses.

        With ``generator``, parameters other than ``webhook_url`` are that generator's params
        (checked against its definition once the generators are cached). Otherwise they are
        checked against :attr:`params`, and against the style's length limits when the style
        catalogue is cached.
        """
        params = dict(params)
        if params.get("generator") is not None:
            own = {k: params.pop(k) for k in ("generator", "webhook_url") if k in params}
            out = super().validate(kind, prompt, own)
            for key, value in params.items():
                if value is None:
                    continue
                if not isinstance(value, (str, int, float, bool)):
                    raise InvalidRequest(
                        f"{self.label} generator parameter {key!r} must be text or a number, "
                        f"not {type(value).__name__}",
                        provider=self.name,
                    )
                out[key] = value
            if self._generators is not None:
                self._generator_data(prompt, out)
            return out
        out = super().validate(kind, prompt, params)
        _check_pairs(out, self.name)
        if self._styles is not None:
            self._check_style(prompt, out)
        return out

    def _style(self, style_id: int | None) -> dict[str, Any] | None:
        """The cached style ``style_id`` (the first style when ``None``); raises if unknown."""
        styles = self._styles or []
        if style_id is None:
            return styles[0] if styles else None
        for style in styles:
            if _as_int(style.get("id")) == style_id:
                return style
        known = ", ".join(f"{s.get('id')} ({s.get('name')})" for s in styles[:12])
        raise InvalidRequest(
            f"{self.label} has no skybox style {style_id}; choose one of: {known} …",
            provider=self.name,
        )

    def _check_style(self, prompt: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        style = self._style(params.get("skybox_style_id"))
        if style is None:
            return None
        self._check_length(style, "max-char", "the prompt", prompt)
        negative = params.get("negative_text") or ""
        self._check_length(style, "negative-text-max-char", "negative_text", negative)
        return style

    def _check_length(self, style: Mapping[str, Any], key: str, what: str, text: str) -> None:
        """Refuse ``text`` when it is longer than the style's ``key`` limit (if it has one)."""
        limit = _as_int(style.get(key))
        if limit and len(text) > limit:
            name = f"{style.get('name')!r} ({style.get('id')})"
            raise InvalidRequest(
                f"{what} has {len(text)} characters but {self.label} style {name} takes at "
                f"most {limit} (its {key}); shorten it",
                provider=self.name,
            )

    def _generator_data(self, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The legacy request's generator params, checked against the cached definition."""
        wanted = str(params.get("generator"))
        generators = self._generators or []
        generator = next((g for g in generators if g.get("generator") == wanted), None)
        if generator is None:
            known = ", ".join(str(g.get("generator")) for g in generators) or "none"
            raise InvalidRequest(
                f"{self.label} has no generator {wanted!r}; it has: {known}", provider=self.name
            )
        specs: Mapping[str, Any] = generator.get("params") or {}
        given = {k: v for k, v in params.items() if k not in ("generator", "webhook_url")}
        given["prompt"] = prompt
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise InvalidRequest(
                f"{self.label} generator {wanted!r} has no parameter {unknown[0]!r}; it takes: "
                f"{', '.join(specs)}",
                provider=self.name,
            )
        data: dict[str, Any] = {}
        for key, spec in specs.items():
            spec = spec if isinstance(spec, Mapping) else {}
            value = given.get(key)
            if value is None or value == "":
                if spec.get("required"):
                    raise InvalidRequest(
                        f"{self.label} generator {wanted!r} needs {key!r}", provider=self.name
                    )
                continue
            kind = spec.get("type")
            if kind == "int":
                number = _Range(
                    key, int, low=_as_int(spec.get("min_value")),
                    high=_as_int(spec.get("max_value")),
                ).coerce(value, self.name)
                data[key] = number
            elif kind == "select":
                options = [o.get("value") for o in spec.get("options") or [] if isinstance(o, dict)]
                if value not in options:
                    raise InvalidRequest(
                        f"{self.label} generator parameter {key!r} must be one of "
                        f"{', '.join(map(str, options))}, not {value!r}",
                        provider=self.name,
                    )
                data[key] = value
            else:
                text = str(value)
                limit = _as_int(spec.get("max_value"))
                if limit and len(text) > limit:
                    raise InvalidRequest(
                        f"{key} has {len(text)} characters but {self.label} generator "
                        f"{wanted!r} takes at most {limit} (its max_value); shorten it",
                        provider=self.name,
                    )
                data[key] = text
        return data

    # --------------------------------------------------------------- actions
    def actions(self, job: Job) -> tuple[str, ...]:
        if job.status is Status.SUCCEEDED and job.kind in ("skybox", "remix"):
            return SKYBOX_ACTIONS
        return ()

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        """``Remix`` (``prompt=``, ``negative_text=``, ``seed=``, ``enhance_prompt=``,
        ``skybox_style_id=`` — default the parent's style) or ``Export`` (``type=`` name/key,
        or ``type_id=`` 1–9; default JPG)."""
        inherited = {k: job.params[k] for k in ("webhook_url",) if job.params.get(k)}
        if label == REMIX:
            prompt = new_prompt(kwargs)
            allowed = ("negative_text", "seed", "enhance_prompt", "skybox_style_id",
                       "return_depth_hq", "webhook_url")
            _no_extra(label, kwargs, allowed)
            params = dict(inherited)
            for key, value in kwargs.items():
                if value is not None:
                    params[key] = self.params[key].coerce(value, self.name)
            style = params.get("skybox_style_id") or _as_int(
                job.extras.get("skybox_style_id") or job.raw.get("skybox_style_id")
            )
            if style:
                params["skybox_style_id"] = style
            remote = _as_int(job.remote_id)
            if remote is None:
                raise InvalidRequest(f"job {job.id} has no Blockade id to remix")
            params["remix_imagine_id"] = remote
            text = (prompt or job.prompt).strip()
            if self._styles is not None:
                self._check_style(text, params)
            return ChildSpec("remix", text, params)
        if label == EXPORT:
            type_id = _export_type(kwargs.pop("type", None), kwargs.pop("type_id", None))
            _no_extra(label, kwargs, ("webhook_url",))
            params = dict(inherited)
            if kwargs.get("webhook_url"):
                params["webhook_url"] = self.params["webhook_url"].coerce(
                    kwargs["webhook_url"], self.name
                )
            obfuscated = job.extras.get("obfuscated_id") or job.raw.get("obfuscated_id")
            if not obfuscated:
                raise InvalidRequest(f"job {job.id} has no Blockade obfuscated_id to export")
            params.update(
                skybox_id=str(obfuscated), type_id=type_id, export_type=EXPORT_TYPES[type_id][1]
            )
            return ChildSpec("export", job.prompt, params)
        raise InvalidRequest(f"{self.label} has no action {label!r}; it has: Remix, Export")

    # --------------------------------------------------------------- wire: jobs
    async def submit(self, job: Job, parent: Job | None) -> Submission:
        if job.kind == "export":
            return await self._submit_export(job)
        if job.kind not in ("skybox", "imagine", "remix"):
            raise InvalidRequest(f"{self.label} cannot start a {job.kind!r} job")
        params = job.params
        if params.get("generator"):
            await self._load_generators()
            data = self._generator_data(job.prompt, params)
            body: dict[str, Any] = {"generator": params["generator"], **data}
            if params.get("webhook_url"):
                body["webhook_url"] = params["webhook_url"]
            response = await self._send("POST", f"{API}/imagine/requests", json=body)
        else:
            await self._load_styles()
            style = self._check_style(job.prompt, params)
            body = {"prompt": job.prompt}
            style_id = params.get("skybox_style_id") or (style or {}).get("id")
            if style_id is not None:
                body["skybox_style_id"] = int(style_id)
            for key in ("negative_text", "enhance_prompt", "seed", "remix_imagine_id",
                        "return_depth_hq", "webhook_url", "control_model"):
                if params.get(key) not in (None, ""):
                    body[key] = params[key]
            for key in ("control_image", "init_image"):
                if params.get(key):
                    body[key] = _image_payload(params[key], key)
            if params.get("init_image") and params.get("init_strength") is not None:
                body["init_strength"] = params["init_strength"]
            if params.get("control_image") and not params.get("control_model"):
                body["control_model"] = "remix"
            response = await self._send("POST", f"{API}/skybox", json=body)
        obj = _unwrap(response.json(), self.label)
        if obj.get("id") in (None, ""):
            raise ProviderError(
                f"{self.label} accepted the request but returned no id: {str(obj)[:120]}",
                provider=self.name,
            )
        return Submission(remote_id=str(obj["id"]), raw=obj, update=self.parse(obj))

    async def _submit_export(self, job: Job) -> Submission:
        params = job.params
        body: dict[str, Any] = {"skybox_id": params["skybox_id"], "type_id": params["type_id"]}
        if params.get("webhook_url"):
            body["webhook_url"] = params["webhook_url"]
        response = await self._send("POST", f"{API}/skybox/export", json=body)
        obj = _unwrap(response.json(), self.label)
        if not obj.get("id"):
            raise ProviderError(
                f"{self.label} accepted the export but returned no id: {str(obj)[:120]}",
                provider=self.name,
            )
        return Submission(remote_id=str(obj["id"]), raw=obj, update=self.parse_export(obj))

    async def poll(self, job: Job) -> Update:
        if job.kind == "export":
            response = await self._send("GET", f"{API}/skybox/export/{job.remote_id}")
            return self.parse_export(_unwrap(response.json(), self.label))
        response = await self._send("GET", f"{API}/imagine/requests/{job.remote_id}")
        return self.parse(_unwrap(response.json(), self.label))

    async def cancel(self, job: Job) -> bool:
        """``DELETE /imagine/requests/{id}`` (status → ``abort``), or for an export
        ``DELETE /skybox/export/{id}``."""
        if not job.remote_id:
            return False
        if job.kind == "export":
            await self._send("DELETE", f"{API}/skybox/export/{job.remote_id}")
        else:
            await self._send("DELETE", f"{API}/imagine/requests/{job.remote_id}")
        return True

    async def remote_history(self, *, since: Any = None) -> AsyncIterator[list[RemoteJob]]:
        """Pages of ``myRequests`` (newest first, :data:`HISTORY_PAGE` a page) until
        ``has_more`` is false, or until the requests are older than ``since`` (a datetime or
        ISO string; default ``None``: all)."""
        cutoff = parse_when(since)
        page = 0
        while True:
            body = await self.my_requests(limit=HISTORY_PAGE, offset=page, order="DESC")
            items = [i for i in body.get("data") or [] if isinstance(i, dict)]
            stop = False
            if cutoff is not None:
                fresh = [i for i in items if (parse_when(i.get("created_at")) or cutoff) >= cutoff]
                stop = len(fresh) < len(items)
                items = fresh
            if items:
                yield [self.remote_job(item) for item in items]
            if stop or not body.get("has_more") or not items:
                return
            page += 1

    def remote_job(self, obj: Mapping[str, Any]) -> RemoteJob:
        """The :class:`RemoteJob` for one generation object of a listing."""
        remix = obj.get("remix_imagine_id")
        params: dict[str, Any] = {}
        if obj.get("generator"):
            params["generator"] = obj["generator"]
            data = obj.get("generator_data")
            if isinstance(data, dict):
                params.update({k: v for k, v in data.items() if k != "prompt"})
        else:
            for key in ("skybox_style_id", "negative_text", "seed"):
                if obj.get(key) not in (None, ""):
                    params[key] = obj[key]
            if remix:
                params["remix_imagine_id"] = remix
        return RemoteJob(
            remote_id=str(obj.get("id")),
            kind="remix" if remix else "skybox",
            prompt=str(obj.get("prompt") or ""),
            update=self.parse(obj),
            params=params,
            parent_remote_id=str(remix) if remix else None,
            created_at=parse_when(obj.get("created_at")),
        )

    # --------------------------------------------------------------- parsing
    def parse(self, obj: Mapping[str, Any]) -> Update:
        """The :class:`Update` for a generation object (POST answer, request body, webhook)."""
        obj = dict(obj)
        raw_status = str(obj.get("status") or "").lower() or None
        status = self.map_status(raw_status)
        update = Update(status=status, progress=PROGRESS.get(raw_status or ""), raw=obj)
        if status is Status.QUEUED:
            update.queue_position = _as_int(obj.get("queue_position"))
        if status is Status.SUCCEEDED:
            images = []
            for key, role in (("file_url", "image"), ("thumb_url", "thumbnail"),
                              ("depth_map_url", "depth")):
                if obj.get(key):
                    images.append(Image(url=str(obj[key]), role=role))
            update.images = images
            if not images:
                update.error = f"{self.label} reported the skybox complete but gave no file_url"
        if status is Status.FAILED:
            update.error = str(obj.get("error_message") or "").strip() or (
                f"{self.label} reported an error without a message"
            )
            lowered = update.error.lower()
            if any(w in lowered for w in ("inappropriate", "moderat", "nsfw", "banned")):
                update.error_type = "ModeratedPrompt"
            elif any(w in lowered for w in ("credit", "quota", "balance")):
                update.error_type = "QuotaExceeded"
        update.extras = {k: obj[k] for k in _EXTRAS if obj.get(k) not in (None, "")}
        return update

    def parse_export(self, obj: Mapping[str, Any]) -> Update:
        """The :class:`Update` for an export object."""
        update = self.parse({k: v for k, v in obj.items()
                             if k not in ("file_url", "thumb_url", "depth_map_url")})
        update.raw = dict(obj)
        if update.status is Status.SUCCEEDED:
            role = "depth" if _as_int(obj.get("type_id")) == 6 else "image"
            url = obj.get("file_url")
            update.images = [Image(url=str(url), role=role)] if url else []
            update.error = None if update.images else (
                f"{self.label} reported the export complete but gave no file_url"
            )
        return update

    # --------------------------------------------------------------- the service's own calls
    def _lock_for(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def prepare(self) -> None:
        """Load the style catalogue and the generators, so :meth:`validate` checks lengths and
        generator params before anything is stored (the engine calls this once per provider)."""
        await self._load_styles()
        await self._load_generators()

    async def _load_styles(self) -> list[dict[str, Any]]:
        return await self._load_catalog("styles", "/skybox/styles")

    async def _load_generators(self) -> list[dict[str, Any]]:
        return await self._load_catalog("generators", "/generators")

    async def _load_catalog(self, what: str, path: str) -> list[dict[str, Any]]:
        """``self._<what>``, fetched from ``path`` once (checked again under the lock, so
        concurrent callers make one request)."""
        attr = f"_{what}"
        if getattr(self, attr) is None:
            async with self._lock_for():
                if getattr(self, attr) is None:
                    response = await self._send("GET", f"{API}{path}")
                    setattr(self, attr, _list(response.json(), self.label, what))
        return getattr(self, attr)

    @idempotent
    async def styles(self, model_version: int | str | None = None) -> list[dict[str, Any]]:
        """``GET /skybox/styles``: ``id``, ``name``, ``"max-char"``, ``"negative-text-max-char"``,
        ``model`` … (hyphenated keys as Blockade sends them).

        Args:
            model_version: only this model's styles (``3`` or ``4``); default ``None``: all,
                fetched once and cached (the cache also serves the length checks).
        """
        if model_version is None:
            return [dict(s) for s in await self._load_styles()]
        response = await self._send(
            "GET", f"{API}/skybox/styles", params={"model_version": str(model_version)}
        )
        return _list(response.json(), self.label, "styles")

    @idempotent
    async def families(self, model_version: int | str | None = None) -> list[dict[str, Any]]:
        """``GET /skybox/families``: ``[{type: "family"|"style", id, name, sort_order, items}]``.

        Args:
            model_version: only this model's styles (default ``None``: all).
        """
        params = {"model_version": str(model_version)} if model_version is not None else None
        response = await self._send("GET", f"{API}/skybox/families", params=params)
        return _list(response.json(), self.label, "families")

    @idempotent
    async def generators(self) -> list[dict[str, Any]]:
        """``GET /generators``: the legacy generators and their ``params`` (cached)."""
        return [dict(g) for g in await self._load_generators()]

    @idempotent
    async def export_types(self) -> list[dict[str, Any]]:
        """``GET /skybox/export``: ``[{id, name, key, premium_feature}]``."""
        response = await self._send("GET", f"{API}/skybox/export")
        return _list(response.json(), self.label, "export types")

    @idempotent
    async def my_requests(self, **filters: Any) -> dict[str, Any]:
        """``GET /imagine/myRequests``: one page, ``{"data", "totalCount", "has_more"}``.

        Args:
            **filters: ``status`` (all, pending, dispatched, processing, complete, abort, error;
                default all), ``limit`` (default 18, at most 100), ``offset`` (the **page
                number**, default 0), ``order`` (``ASC``/``DESC``, default DESC), ``imagine_id``,
                ``query`` (title or prompt), ``generator``, ``skybox_style_id``.
        """
        allowed = ("status", "limit", "offset", "order", "imagine_id", "query", "generator",
                   "skybox_style_id")
        unknown = sorted(set(filters) - set(allowed))
        if unknown:
            raise InvalidRequest(
                f"myRequests has no filter {unknown[0]!r}; it takes: {', '.join(allowed)}",
                provider=self.name,
            )
        query = {k: str(v) for k, v in filters.items() if v is not None}
        response = await self._send("GET", f"{API}/imagine/myRequests", params=query)
        body = response.json()
        if not isinstance(body, dict):
            raise ProviderError(f"{self.label} answered myRequests with {str(body)[:80]}",
                                provider=self.name)
        return body

    @idempotent
    async def get_request(self, imagine_id: int | str) -> dict[str, Any]:
        """``GET /imagine/requests/{id}``: the generation object (unwrapped)."""
        response = await self._send("GET", f"{API}/imagine/requests/{_as_id(imagine_id)}")
        return _unwrap(response.json(), self.label)

    @idempotent
    async def get_request_by_obfuscated_id(self, obfuscated_id: str) -> dict[str, Any]:
        """``GET /imagine/requests/obfuscated-id/{obfuscated_id}`` (unwrapped)."""
        response = await self._send(
            "GET", f"{API}/imagine/requests/obfuscated-id/{_as_id(obfuscated_id)}"
        )
        return _unwrap(response.json(), self.label)

    async def delete(self, imagine_id: int | str) -> dict[str, Any]:
        """``DELETE /imagine/deleteImagine/{id}``: ``{"success": "Item deleted successfully",
        "id": "42"}``."""
        response = await self._send("DELETE", f"{API}/imagine/deleteImagine/{_as_id(imagine_id)}")
        return response.json()

    async def cancel_pending(self) -> dict[str, Any]:
        """``DELETE /imagine/requests/pending``: every ``pending`` request → ``abort``."""
        response = await self._send("DELETE", f"{API}/imagine/requests/pending")
        return response.json()

    @idempotent
    async def get_export(self, export_id: str) -> dict[str, Any]:
        """``GET /skybox/export/{id}``: the export object (``file_url`` once complete)."""
        response = await self._send("GET", f"{API}/skybox/export/{_as_id(export_id)}")
        return _unwrap(response.json(), self.label)

    async def cancel_export(self, export_id: str) -> dict[str, Any]:
        """``DELETE /skybox/export/{id}``: cancel an export that is not complete."""
        response = await self._send("DELETE", f"{API}/skybox/export/{_as_id(export_id)}")
        return response.json()


# ------------------------------------------------------------------------------ helpers
def _unwrap(body: Any, label: str) -> dict[str, Any]:
    """A single item: the ``request`` (documented) or ``response`` (seed page) envelope's
    content, or the body itself."""
    if isinstance(body, dict):
        for key in ("request", "response"):
            if isinstance(body.get(key), dict):
                return body[key]
        return body
    raise ProviderError(f"{label} answered with {str(body)[:80]!r} instead of an object")


def _list(body: Any, label: str, what: str) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        body = body["data"]
    if not isinstance(body, list):
        raise ProviderError(f"{label} answered {what} with {str(body)[:80]!r} instead of a list")
    return [dict(item) for item in body if isinstance(item, dict)]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _bounds(low: float | None, high: float | None) -> str:
    def text(x: float | None) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if high is None:
        return f"at least {text(low)}"
    if low is None:
        return f"at most {text(high)}"
    return f"between {text(low)} and {text(high)}"


def _as_id(value: Any) -> str:
    text = str(value).strip()
    if not text or "/" in text or "?" in text or "#" in text:
        raise InvalidRequest(f"{value!r} is not a Blockade id")
    return text


def _check_pairs(params: Mapping[str, Any], provider: str) -> None:
    if params.get("control_model") and not params.get("control_image"):
        raise InvalidRequest("control_model needs a control_image", provider=provider)
    if params.get("init_strength") is not None and not params.get("init_image"):
        raise InvalidRequest("init_strength needs an init_image", provider=provider)


def _export_type(kind: Any, type_id: Any) -> int:
    if kind is not None and type_id is not None:
        raise InvalidRequest("give the export's type or its type_id, not both")
    if type_id is not None:
        number = _as_int(type_id)
        if number not in EXPORT_TYPES:
            raise InvalidRequest(f"Export type_id must be 1–9, not {type_id!r}")
        return number  # type: ignore[return-value]
    if kind is None:
        return 1
    if isinstance(kind, int) and not isinstance(kind, bool):
        return _export_type(None, kind)
    found = _EXPORT_ALIASES.get(str(kind).strip().lower())
    if found is None:
        names = ", ".join(sorted({"jpg", "png", "cube-map", "hdri", "exr", "depth", "video",
                                  "video-portrait", "video-square"}))
        raise InvalidRequest(f"unknown Export type {kind!r}; use one of: {names}")
    return found


def _image_payload(value: str, name: str) -> str:
    """What goes on the wire for an image parameter: URLs and base64 as given, files base64."""
    if value.startswith(("http://", "https://", "data:")) or not os.path.isfile(value):
        return value
    try:
        with open(value, "rb") as fh:
            return base64.b64encode(fh.read()).decode("ascii")
    except OSError as exc:
        raise InvalidRequest(f"cannot read {name} file {value!r}: {exc.strerror}") from None


def _no_extra(label: str, kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(k for k, v in kwargs.items() if v is not None and k not in allowed)
    if extra:
        raise InvalidRequest(
            f"{label} takes no {', '.join(extra)} argument; it takes: {', '.join(allowed)}"
        )
