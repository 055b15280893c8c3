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
from typing import Any, ClassVar

import httpx

from ..errors import (
    InvalidRequest,
    ModeratedPrompt,
    NotFound,
    ProviderError,
    QuotaExceeded,
)
from ..models import GRID_ACTIONS, REROLL, VARY_REGION, Image, Job, Status
from ._base import ChildSpec, ParamSpec, Provider, Submission, Update, idempotent

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
GRID_KINDS = frozenset({"imagine", "reroll", "variation", "vary_region"})

_ENDPOINT = {
    "imagine": "/imagine",
    "reroll": "/reroll",
    "upscale": "/upscale-1x",
    "variation": "/variations",
    "vary_region": "/inpaint",
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
            raise InvalidRequest(
                f"{provider} parameter 'aspect_ratio' must look like 16:9, not {value!r}",
                provider=provider,
            ) from None


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
            return NotFound  # type: ignore[return-value]
        return None

    # --------------------------------------------------------------- actions
    def actions(self, job: Job) -> tuple[str, ...]:
        if job.status is not Status.SUCCEEDED:
            return ()
        if job.kind in GRID_KINDS:
            return GRID_ACTIONS
        if job.kind == "upscale":
            return (VARY_REGION,)
        return ()

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        inherited = {k: job.params[k] for k in _WEBHOOK_FIELDS if job.params.get(k)}
        prompt = kwargs.pop("prompt", None)
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise InvalidRequest("the new prompt is empty; give it some text or leave it out")
        if label in GRID_ACTIONS and label != REROLL:
            _no_extra(label, kwargs)
            kind = "upscale" if label[0] == "U" else "variation"
            params = {"index": int(label[1]), **inherited}
            if kind == "variation" and job.params.get("aspect_ratio"):
                params["aspect_ratio"] = job.params["aspect_ratio"]
            return ChildSpec(kind, job.prompt, params)
        if label == REROLL:
            aspect = kwargs.pop("aspect_ratio", None) or job.params.get("aspect_ratio")
            _no_extra(label, kwargs)
            params = {**inherited, **({"aspect_ratio": _aspect_ratio(aspect)} if aspect else {})}
            return ChildSpec("reroll", prompt or job.prompt, params)
        if label == VARY_REGION:
            mask = kwargs.pop("mask", None)
            _no_extra(label, kwargs)
            from ..errors import InvalidMask
            from ..imaging import load_mask

            if mask is None:
                raise InvalidMask(
                    "Vary (Region) needs a mask: a PIL image, numpy array, PNG bytes or path "
                    "with the region to redraw in white"
                )
            size = _image_size(job)
            return ChildSpec(
                "vary_region", prompt or job.prompt, dict(inherited),
                files={"mask": load_mask(mask, size)},
            )
        raise InvalidRequest(f"APIFRAME has no action {label!r}")

    # --------------------------------------------------------------- wire
    async def submit(self, job: Job, parent: Job | None) -> Submission:
        endpoint = _ENDPOINT.get(job.kind)
        if endpoint is None:
            raise InvalidRequest(f"APIFRAME cannot start a {job.kind!r} job")
        params = job.params
        body: dict[str, Any] = {k: params[k] for k in _WEBHOOK_FIELDS if params.get(k)}
        if job.kind == "imagine":
            body["prompt"] = job.prompt
            for key in ("aspect_ratio", "process_mode"):
                if params.get(key):
                    body[key] = params[key]
        else:
            if parent is None or not parent.remote_id:
                raise InvalidRequest(f"a {job.kind} job needs a submitted parent task")
            body["parent_task_id"] = parent.remote_id
            if job.kind == "reroll":
                body["prompt"] = job.prompt
                if params.get("aspect_ratio"):
                    body["aspect_ratio"] = params["aspect_ratio"]
            elif job.kind in ("upscale", "variation"):
                body["index"] = str(params["index"])
            elif job.kind == "vary_region":
                with open(params["mask_path"], "rb") as fh:
                    mask = fh.read()
                body["mask"] = "data:image/png;base64," + base64.b64encode(mask).decode("ascii")
                body["prompt"] = job.prompt
        response = await self._send("POST", endpoint, json=body)
        data = response.json()
        task_id = data.get("task_id") or data.get("taskId") if isinstance(data, dict) else None
        if not task_id:
            raise ProviderError(
                f"APIFRAME accepted the request but returned no task_id: {str(data)[:120]}",
                provider=self.name,
            )
        return Submission(remote_id=str(task_id), raw=data)

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
            by_id = {str(t.get("task_id") or t.get("taskId")): t for t in tasks if isinstance(t, dict)}
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

    def parse(self, body: Mapping[str, Any]) -> Update:
        """The :class:`Update` for a fetch / fetch-many / webhook task object."""
        body = dict(body)
        has_result = bool(body.get("image_urls") or body.get("image_url"))
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
            update.images = [
                Image(url=u, role="image", index=(i + 1 if len(urls) > 1 else None))
                for i, u in enumerate(urls)
            ]
        if update.status is Status.FAILED:
            errors = body.get("errors")
            msgs = [e.get("msg") for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
            update.error = (
                body.get("message") or body.get("error") or "; ".join(m for m in msgs if m)
                or "APIFRAME reported the task as failed without a reason"
            )
            lowered = update.error.lower()
            if "not found" in lowered:
                update.error_type = "NotFound"
            elif any(w in lowered for w in ("banned", "moderat", "nsfw")):
                update.error_type = "ModeratedPrompt"
        for key in ("seed", "sref", "content"):
            if key in body:
                update.extras[key] = body[key]
        return update


def _percentage(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return max(0.0, min(100.0, float(str(value).strip().rstrip("%"))))
    except ValueError:
        return None


def _no_extra(label: str, kwargs: Mapping[str, Any]) -> None:
    extra = {k for k, v in kwargs.items() if v is not None}
    if extra:
        raise InvalidRequest(f"{label} takes no {', '.join(sorted(extra))} argument")


def _image_size(job: Job) -> tuple[int, int]:
    image = job.images[0] if job.images else None
    if image is None:
        raise InvalidRequest(f"job {job.id} has no image to draw a mask on yet")
    if image.width and image.height:
        return (image.width, image.height)
    from ..imaging import image_size

    return image_size(image.read_bytes())
