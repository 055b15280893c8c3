"""APIFRAME, the Midjourney proxy's original v1 API (``https://api.apiframe.pro``).

Wire facts this module relies on (``providers.md`` §1):

- ``Authorization: <key>`` with the raw key, no ``Bearer``.
- Every task endpoint is a JSON ``POST`` answering ``{"task_id": …}``; ``/fetch`` and
  ``/fetch-many`` return the task object, which is also the webhook body.
- ``percentage`` is a **string**; status strings are ``pending``, ``staged``, ``starting``,
  ``processing``, ``finished``, ``failed``, ``retry``/``retrying`` (the Node SDK's ``completed``
  is accepted too, so nothing hangs on it). Finished examples in the docs may omit ``status``:
  a task with result URLs is taken as finished.
- Errors are ``{"errors": [{"msg": …}]}`` (400) or ``{}`` (401, 500).
- v1 has no cancel endpoint: cancelling stops our polling; the task may still finish upstream.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

import httpx

from ..errors import (
    InvalidRequest,
    ModeratedPrompt,
    NotFound,
    ProviderError,
    QuotaExceeded,
)
from ..models import (
    GRID_ACTIONS,
    REROLL,
    UPSCALE_ACTIONS,
    VARY_REGION,
    Balance,
    Image,
    Job,
    Status,
    utcnow,
)
from ._base import (
    ChildSpec,
    ParamSpec,
    Provider,
    Submission,
    Update,
    idempotent,
    new_prompt,
)
from ._midjourney import no_extra, vary_region_mask

__all__ = ["Apiframe"]

#: APIFRAME's status strings → the five statuses.
STATUS_MAP: dict[str, Status] = {
    "staged": Status.QUEUED,
    "pending": Status.QUEUED,
    "retry": Status.QUEUED,
    "retrying": Status.QUEUED,
    "starting": Status.RUNNING,
    "processing": Status.RUNNING,
    "finished": Status.SUCCEEDED,
    "completed": Status.SUCCEEDED,
    "failed": Status.FAILED,
}

#: Job kinds whose result is a 2×2 grid.
GRID_KINDS = frozenset(
    {"imagine", "reroll", "variation", "vary_region", "outpaint", "pan", "blend"}
)

_ENDPOINT = {
    "imagine": "/imagine",
    "reroll": "/reroll",
    "variation": "/variations",
    "vary_region": "/inpaint",
    "outpaint": "/outpaint",
    "pan": "/pan",
    "describe": "/describe",
    "blend": "/blend",
    "seed": "/seed",
    "faceswap": "/faceswap",
}

#: Labels on an upscale-1x → (child kind, params). Upscale modes pick the endpoint at submit.
UPSCALE_CHILDREN: dict[str, tuple[str, dict[str, Any]]] = {
    "Vary (Strong)": ("variation", {"index": "strong"}),
    "Vary (Subtle)": ("variation", {"index": "subtle"}),
    "Upscale (Subtle)": ("upscale", {"mode": "subtle"}),
    "Upscale (Creative)": ("upscale", {"mode": "creative"}),
    "Upscale (2x)": ("upscale", {"mode": "2x"}),
    "Upscale (4x)": ("upscale", {"mode": "4x"}),
    "Zoom Out 2x": ("outpaint", {"zoom_ratio": 2}),
    "Zoom Out 1.5x": ("outpaint", {"zoom_ratio": 1.5}),
    "⬅️": ("pan", {"direction": "left"}),
    "➡️": ("pan", {"direction": "right"}),
    "⬆️": ("pan", {"direction": "up"}),
    "⬇️": ("pan", {"direction": "down"}),
}

_WEBHOOK_FIELDS = ("webhook_url", "webhook_secret")


def _aspect_ratio(value: str) -> str:
    parts = str(value).strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(value)
    return f"{int(parts[0])}:{int(parts[1])}"


class _AspectRatio(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        try:
            return _aspect_ratio(value)
        except ValueError:
            raise self.invalid(provider, "look like 16:9", value) from None


#: APIFRAME's credit table, by price key (docs.apiframe.ai/my-account/image-credits): Imagine,
#: Blend, Reroll 4; Variations, Outpaint (zoom), Inpaint (Vary Region), Pan 4 in fast mode;
#: Describe, Shorten, Seed, Upscale-1x 2; Faceswap 2; high-res upscale 2x 1 and 4x 2; subtle or
#: creative upscale 4. APIFRAME publishes no dollar price per credit (plans are bundles), so
#: ``usd`` stays NA.
APIFRAME_CREDITS: Mapping[str, float] = {
    "imagine": 4,
    "reroll": 4,
    "blend": 4,
    "variation": 4,
    "vary_region": 4,
    "outpaint": 4,
    "pan": 4,
    "upscale": 2,
    "describe": 2,
    "seed": 2,
    "shorten": 2,
    "faceswap": 2,
    "upscale_2x": 1,
    "upscale_4x": 2,
    "upscale_subtle": 4,
    "upscale_creative": 4,
}
#: APIFRAME kinds the table prices for fast mode only: in turbo they are priced under
#: ``<kind>_turbo``, which nothing publishes (NA unless the user prices it).
_FAST_ONLY = ("variation", "vary_region", "outpaint", "pan")
#: APIFRAME upscale variants (``type`` of upscale-highres / upscale-alt).
_UPSCALE_VARIANTS = ("2x", "4x", "subtle", "creative")


class Apiframe(Provider):
    """The APIFRAME v1 client. Actions: U1–U4, V1–V4, 🔄 on a grid; Vary (Region) on an upscale."""

    name: ClassVar[str] = "apiframe"
    label: ClassVar[str] = "APIFRAME"
    env_key: ClassVar[str] = "APIFRAME_API_KEY"
    default_base_url: ClassVar[str] = "https://api.apiframe.pro"
    sandbox_prefix: ClassVar[str] = "/apiframe"
    status_map: ClassVar[Mapping[str, Status]] = STATUS_MAP
    max_concurrency: ClassVar[int] = 12
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 12.0)
    default_timeout: ClassVar[float] = 900.0
    poll_batch: ClassVar[int] = 20
    PRICES: ClassVar[Mapping[str, float]] = APIFRAME_CREDITS
    PRICE_UNIT: ClassVar[str | None] = "credits"
    PRICE_KEYS: ClassVar[tuple[str, ...]] = tuple(f"{k}_turbo" for k in _FAST_ONLY)
    kinds: ClassVar[tuple[str, ...]] = (
        "imagine", "describe", "blend", "seed", "faceswap", "upscale",
    )
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "aspect_ratio": _AspectRatio(
            "aspect_ratio", help='width:height of each image, e.g. "16:9" (APIFRAME default 1:1)'
        ),
        "process_mode": ParamSpec(
            "process_mode", choices=("fast", "turbo"), help="fast (default) or turbo"
        ),
        "webhook_url": ParamSpec("webhook_url", help="APIFRAME posts progress and the result here"),
        "webhook_secret": ParamSpec(
            "webhook_secret", secret=True, help="sent back as the x-webhook-secret header"
        ),
    }

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self._api_key} if self._api_key else {}

    # --------------------------------------------------------------- errors
    def error_message(self, response: httpx.Response, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("errors"), list):
            msgs = [
                str(e.get("msg") if isinstance(e, dict) else e) for e in body["errors"] if e
            ]
            if msgs:
                return "; ".join(msgs)
        return super().error_message(response, body)

    def classify_error(self, response: httpx.Response, message: str) -> type[ProviderError] | None:
        lowered = message.lower()
        if any(word in lowered for word in ("banned", "moderat", "nsfw", "not allowed")):
            return ModeratedPrompt
        if any(word in lowered for word in ("credit", "quota", "insufficient", "subscription")):
            return QuotaExceeded
        if response.status_code == 404 or "not found" in lowered:
            return NotFound
        return None

    # --------------------------------------------------------------- validation
    @classmethod
    def price_item(cls, kind: str, params: Mapping[str, Any]) -> tuple[str, float] | None:
        """The :data:`APIFRAME_CREDITS` key: the kind, ``upscale_<mode>`` for the high-res and
        subtle/creative upscales (the action's ``mode``, or ``type`` from the Python API),
        ``<kind>_turbo`` for the fast-only kinds in turbo mode."""
        variant = str(
            params.get("mode") or params.get("type") or params.get("upscale_type") or ""
        ).lower()
        if kind.startswith("upscale") and variant in _UPSCALE_VARIANTS:
            return (f"upscale_{variant}", 1.0)
        if kind in _FAST_ONLY and str(params.get("process_mode", "")).lower() == "turbo":
            return (f"{kind}_turbo", 1.0)
        return (kind, 1.0)

    def validate(self, kind: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check a new job; ``imagine`` needs a prompt, the other kinds their own fields:

        - ``describe``: ``image_url`` (public URL).
        - ``blend``: ``image_urls`` (2–5 URLs), ``dimension`` square (default) | portrait |
          landscape.
        - ``faceswap``: ``target_image_url`` and ``swap_image_url``.
        - ``upscale`` (high-res from a URL): ``image_url`` and ``type`` 2x (default) | 4x.
        - ``seed``: a parent job (``parent=``), no fields.
        """
        if kind == "imagine":
            return super().validate(kind, prompt, params)
        params = dict(params)
        out: dict[str, Any] = {
            k: self.params[k].coerce(params.pop(k), self.name)
            for k in list(params) if k in _WEBHOOK_FIELDS or k == "process_mode"
        }
        if kind == "describe":
            out["image_url"] = _url(params.pop("image_url", None), "image_url")
        elif kind == "blend":
            urls = params.pop("image_urls", None)
            if not isinstance(urls, (list, tuple)) or not 2 <= len(urls) <= 5:
                raise InvalidRequest(
                    "blend needs image_urls: a list of 2 to 5 image URLs", provider=self.name
                )
            out["image_urls"] = [_url(u, "image_urls") for u in urls]
            dimension = params.pop("dimension", None)
            if dimension is not None:
                out["dimension"] = ParamSpec(
                    "dimension", choices=("square", "portrait", "landscape")
                ).coerce(dimension, self.name)
        elif kind == "faceswap":
            out["target_image_url"] = _url(params.pop("target_image_url", None),
                                           "target_image_url")
            out["swap_image_url"] = _url(params.pop("swap_image_url", None), "swap_image_url")
        elif kind == "upscale":
            out["image_url"] = _url(params.pop("image_url", None), "image_url")
            out["mode"] = ParamSpec("type", choices=("2x", "4x")).coerce(
                params.pop("type", "2x"), self.name
            )
        if params:
            raise InvalidRequest(
                f"{self.name} {kind} takes no {', '.join(sorted(params))} parameter",
                provider=self.name,
            )
        return out

    # --------------------------------------------------------------- actions
    def actions(self, job: Job) -> tuple[str, ...]:
        if job.status is not Status.SUCCEEDED:
            return ()
        if job.kind in GRID_KINDS:
            return GRID_ACTIONS
        if job.kind == "upscale" and "index" in job.params:  # an upscale-1x
            return UPSCALE_ACTIONS
        return ()

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        inherited = {k: job.params[k] for k in (*_WEBHOOK_FIELDS, "process_mode")
                     if job.params.get(k)}
        prompt = new_prompt(kwargs)
        if label in GRID_ACTIONS and label != REROLL:
            no_extra(label, {**kwargs, "prompt": prompt})  # /upscale-1x, /variations: none
            kind = "upscale" if label[0] == "U" else "variation"
            return ChildSpec(kind, job.prompt, {"index": int(label[1]), **inherited})
        if label == REROLL:
            aspect = kwargs.pop("aspect_ratio", None) or job.params.get("aspect_ratio")
            no_extra(label, kwargs)
            params = {**inherited, **({"aspect_ratio": _aspect_ratio(aspect)} if aspect else {})}
            return ChildSpec("reroll", prompt or job.prompt, params)
        if label == VARY_REGION:
            mask = vary_region_mask(label, job, kwargs)
            return ChildSpec(
                "vary_region", prompt or job.prompt, dict(inherited), files={"mask": mask}
            )
        if label in UPSCALE_CHILDREN:
            kind, params = UPSCALE_CHILDREN[label]
            params = {**params, **inherited}
            if kind in ("outpaint", "pan"):
                if kind == "outpaint" and kwargs.get("zoom_ratio") is not None:
                    ratio = float(kwargs.pop("zoom_ratio"))
                    if not 1 <= ratio <= 2:
                        raise InvalidRequest(f"zoom_ratio must be between 1 and 2, not {ratio:g}")
                    params["zoom_ratio"] = ratio
                if kind == "outpaint" and kwargs.get("aspect_ratio"):
                    params["aspect_ratio"] = _aspect_ratio(kwargs.pop("aspect_ratio"))
                no_extra(label, kwargs)
                return ChildSpec(kind, prompt or job.prompt, params)
            no_extra(label, {**kwargs, "prompt": prompt})
            return ChildSpec(kind, job.prompt, params)
        raise InvalidRequest(f"APIFRAME has no action {label!r}")

    # --------------------------------------------------------------- wire
    async def submit(self, job: Job, parent: Job | None) -> Submission:
        endpoint, body = self.request_for(job, parent)
        response = await self._send("POST", endpoint, json=body)
        data = response.json()
        task_id = (data.get("task_id") or data.get("taskId")) if isinstance(data, dict) else None
        if not task_id:
            raise ProviderError(
                f"APIFRAME accepted the request but returned no task_id: {str(data)[:120]}",
                provider=self.name,
            )
        return Submission(remote_id=str(task_id), raw=data)

    def request_for(self, job: Job, parent: Job | None) -> tuple[str, dict[str, Any]]:
        """The endpoint and JSON body that start ``job`` (``parent`` for actions)."""
        params = job.params
        body: dict[str, Any] = {k: params[k] for k in _WEBHOOK_FIELDS if params.get(k)}
        kind = job.kind
        if kind == "imagine":
            body["prompt"] = job.prompt
            for key in ("aspect_ratio", "process_mode"):
                if params.get(key):
                    body[key] = params[key]
            return "/imagine", body
        if kind == "describe":
            return "/describe", {**body, "image_url": params["image_url"]}
        if kind == "blend":
            body["image_urls"] = list(params["image_urls"])
            for key in ("dimension", "process_mode"):
                if params.get(key):
                    body[key] = params[key]
            return "/blend", body
        if kind == "faceswap":
            return "/faceswap", {**body, "target_image_url": params["target_image_url"],
                                 "swap_image_url": params["swap_image_url"]}
        if kind == "upscale" and parent is None:
            return "/upscale-highres", {**body, "image_url": params["image_url"],
                                        "type": params.get("mode", "2x")}
        if parent is None or not parent.remote_id:
            raise InvalidRequest(f"a {kind} job needs a submitted parent task")
        if kind == "seed":
            return "/seed", {"task_id": parent.remote_id}
        body["parent_task_id"] = parent.remote_id
        if kind == "upscale":
            mode = params.get("mode")
            if mode in ("subtle", "creative"):
                return "/upscale-alt", {**body, "type": mode}
            if mode in ("2x", "4x"):
                body["type"] = mode
                if parent.kind in GRID_KINDS and params.get("index"):
                    body["index"] = str(params["index"])
                return "/upscale-highres", body
            return "/upscale-1x", {**body, "index": str(params["index"])}
        if kind == "reroll":
            body["prompt"] = job.prompt
            if params.get("aspect_ratio"):
                body["aspect_ratio"] = params["aspect_ratio"]
        elif kind == "variation":
            body["index"] = str(params["index"])
        elif kind == "vary_region":
            with open(params["mask_path"], "rb") as fh:
                mask = fh.read()
            body["mask"] = "data:image/png;base64," + base64.b64encode(mask).decode("ascii")
            body["prompt"] = job.prompt
        elif kind == "outpaint":
            body["zoom_ratio"] = params["zoom_ratio"]
            body["prompt"] = job.prompt
            if params.get("aspect_ratio"):
                body["aspect_ratio"] = params["aspect_ratio"]
        elif kind == "pan":
            body["direction"] = params["direction"]
            body["prompt"] = job.prompt
        if params.get("process_mode") and kind in ("reroll", "variation", "vary_region",
                                                   "outpaint", "pan"):
            body["process_mode"] = params["process_mode"]
        endpoint = _ENDPOINT.get(kind)
        if endpoint is None:
            raise InvalidRequest(f"APIFRAME cannot start a {kind!r} job")
        return endpoint, body

    async def poll(self, job: Job) -> Update:
        response = await self._send("POST", "/fetch", json={"task_id": job.remote_id})
        return self.parse(response.json())

    async def poll_many(self, jobs: Sequence[Job]) -> list[Update]:
        if len(jobs) == 1:
            return [await self.poll(jobs[0])]
        updates: list[Update] = []
        for start in range(0, len(jobs), self.poll_batch):
            chunk = jobs[start : start + self.poll_batch]
            if len(chunk) == 1:  # fetch-many needs at least two ids
                updates.append(await self.poll(chunk[0]))
                continue
            response = await self._send(
                "POST", "/fetch-many", json={"task_ids": [j.remote_id for j in chunk]}
            )
            tasks = response.json().get("tasks") or []
            by_id = {
                str(t.get("task_id") or t.get("taskId")): t for t in tasks if isinstance(t, dict)
            }
            for job in chunk:
                task = by_id.get(str(job.remote_id))
                if task is None:
                    updates.append(await self.poll(job))
                else:
                    updates.append(self.parse(task))
        return updates

    @idempotent
    async def account(self) -> dict[str, Any]:
        """``GET /account``: email, credits, plan, next_billing_date, total_images."""
        response = await self._send("GET", "/account")
        return response.json()

    @idempotent
    async def balance(self) -> Balance | None:
        """``GET /account``'s ``credits`` and ``plan``; ``resets_at`` is
        ``next_billing_date`` when it is a date (one request)."""
        account = await self.account()
        credits = account.get("credits") if isinstance(account, dict) else None
        if isinstance(credits, bool) or not isinstance(credits, (int, float)):
            raise ProviderError(
                f"{self.label} /account gave no credits figure: {str(account)[:80]}",
                provider=self.name,
            )
        plan = account.get("plan")
        return Balance(
            self.name, {"credits": float(credits)}, utcnow(),
            plan=str(plan) if plan else None,
            resets_at=_date(account.get("next_billing_date")),
        )

    def quota_message(self, answer: str) -> str:
        return (
            f"APIFRAME has not enough credits for this job ({answer}); buy credits or upgrade "
            "the plan in the APIFRAME dashboard, or wait for the plan to renew"
        )

    def parse(self, body: Mapping[str, Any]) -> Update:
        """The :class:`Update` for a fetch / fetch-many / webhook task object."""
        body = dict(body)
        task_type = str(body.get("task_type") or "")
        no_images = task_type in ("describe", "seed")
        has_result = bool(
            body.get("image_urls") or body.get("image_url") or body.get("content")
            or body.get("seed")
        )
        status = self.map_status(body.get("status")) if body.get("status") else (
            Status.SUCCEEDED if has_result else Status.RUNNING
        )
        progress = _percentage(body.get("percentage"))
        update = Update(status=status, progress=progress, raw=body)
        if body.get("errors") and status is not Status.SUCCEEDED:
            update.status = Status.FAILED
        if status is Status.SUCCEEDED:
            update.progress = 100.0
            if body.get("original_image_url"):
                update.grid = Image(url=body["original_image_url"], role="grid")
            urls = body.get("image_urls") or ([body["image_url"]] if body.get("image_url") else [])
            if no_images:
                urls = []
            update.images = [
                Image(url=u, role="image", index=(i + 1 if len(urls) > 1 else None))
                for i, u in enumerate(urls)
            ]
        if update.status is Status.FAILED:
            errors = body.get("errors")
            msgs = (
                [e.get("msg") for e in errors if isinstance(e, dict)]
                if isinstance(errors, list) else []
            )
            update.error = (
                body.get("message") or body.get("error") or "; ".join(m for m in msgs if m)
                or "APIFRAME reported the task as failed without a reason"
            )
            lowered = update.error.lower()
            if "not found" in lowered:
                update.error_type = "NotFound"
            elif any(w in lowered for w in ("banned", "moderat", "nsfw")):
                update.error_type = "ModeratedPrompt"
        for key in ("seed", "sref"):
            if body.get(key) is not None:
                update.extras[key] = str(body[key])
        if task_type == "describe" and isinstance(body.get("content"), list):
            update.extras["prompts"] = [str(p) for p in body["content"]]
        return update


def _url(value: Any, name: str) -> str:
    if isinstance(value, Image):
        value = value.url
    if not isinstance(value, str) or not value.startswith(("http://", "https://", "data:")):
        raise InvalidRequest(
            f"{name} must be a public http(s) image URL (e.g. job.images[0].url), not {value!r}",
            provider="apiframe",
        )
    return value


def _percentage(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return max(0.0, min(100.0, float(str(value).strip().rstrip("%"))))
    except ValueError:
        return None


def _date(value: Any) -> datetime | None:
    """An ISO date or time (``next_billing_date``) as tz-aware UTC, else ``None``."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
