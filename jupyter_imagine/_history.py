"""The unified history: one schema for every provider's jobs, and the remote pull that fills it.

Three parts:

1. **The schema** (:data:`HISTORY_COLUMNS`, :func:`derive_columns`). What each provider's job
   record means in the common columns that do not sit on :class:`~jupyter_imagine.models.Job`
   itself: ``negative_prompt``, ``width``/``height``, ``credits``. The store calls
   :func:`derive_columns` on every save and keeps the results in indexed columns, so building the
   frame never parses a record. Rules, per provider (see ``providers.md``):

   * ``negative_prompt``: the ``negative_prompt`` / ``negative_text`` parameter (Blockade's
     wire name), else the same field in the provider's payload (``negative_text``,
     ``negativePrompt``); else NA.
   * ``width``/``height``: the first result image's pixel size (the panorama for a skybox, one
     tile for a 2×2 grid), else the grid's; NA until known.
   * ``credits``: a cost the payload states (``credits``, ``cost``, ``credits_used``,
     ``creditsUsed`` …) wins. Otherwise APIFRAME's published credit table (imagine, reroll,
     blend, variation, vary region, outpaint, pan: 4; upscale 2; upscale 2x 1, 4x 2, subtle or
     creative 4; describe, seed, shorten, faceswap 2; the "fast" prices, so turbo jobs of the
     kinds the table lists as fast stay NA) and Blockade's Model 4 variants (Standard 3,
     Enhanced 6). Only succeeded jobs carry credits: whether a failed job is charged is not
     documented anywhere, so it is NA rather than a guess. TheNextLeg, neuroflash and Banatie
     publish no per-job cost: NA.

2. **The frame** is built by :meth:`jupyter_imagine.store.Store.frame` (one SQL query) with the
   columns and dtypes of :data:`HISTORY_COLUMNS`; :func:`check_frame` is what the ``df.imagine``
   accessor uses to refuse frames without the key columns.

3. **The remote pull** (:func:`sync`): what each provider itself knows, merged into the store by
   ``(provider, remote_id)`` without duplicates (see :func:`sync` for the per-provider rules).

This module imports nothing above :mod:`jupyter_imagine.models` at import time (the store uses
part 1); the pull takes the engine it works with as an argument.
"""

from __future__ import annotations

import asyncio
import html
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._secrets import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .engine import Engine
    from .providers import Provider, RemoteJob

__all__ = [
    "HISTORY_COLUMNS",
    "KEY_COLUMNS",
    "PullReport",
    "check_frame",
    "credits_for",
    "derive_columns",
    "sync",
]

logger = get_logger(__name__)

#: The history frame's columns, in order (the index is the key ``(provider, id)``).
HISTORY_COLUMNS = (
    "provider",
    "id",
    "remote_id",
    "parent_id",
    "root_id",
    "kind",
    "action",
    "status",
    "prompt",
    "negative_prompt",
    "params",
    "created_at",
    "started_at",
    "completed_at",
    "queue_s",
    "run_s",
    "total_s",
    "n_images",
    "width",
    "height",
    "image_urls",
    "image_paths",
    "credits",
    "error",
    "sandbox",
)
#: The five providers of DESIGN.md: the ``provider`` column's categories always include them, so
#: frames of different providers (or filters) have the same dtype and concatenate cleanly.
KNOWN_PROVIDERS = ("apiframe", "banatie", "blockade", "neuroflash", "thenextleg")
#: The columns that identify a row: the frame's index is the pair of them.
KEY_COLUMNS = ("provider", "id")


# ===================================================================================== schema
_NEGATIVE_PARAMS = ("negative_prompt", "negative_text", "negative")
_NEGATIVE_RAW = ("negative_text", "negative_prompt", "negativePrompt", "negativeText")
_COST_FIELDS = ("credits", "cost", "credits_used", "creditsUsed", "credit_cost", "creditCost")

#: APIFRAME's credit table (docs.apiframe.ai/my-account/image-credits), by job kind.
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
}
#: APIFRAME kinds the table prices for fast mode only (a turbo job of these stays NA).
_APIFRAME_FAST_ONLY = frozenset({"variation", "vary_region", "outpaint", "pan"})
#: APIFRAME upscale variants (``type`` of upscale-highres / upscale-alt).
_APIFRAME_UPSCALES: Mapping[str, float] = {"2x": 1, "4x": 2, "subtle": 4, "creative": 4}
#: Blockade's Model 4 variants, by the words their names contain.
BLOCKADE_VARIANT_CREDITS: Mapping[str, float] = {"standard": 3, "enhanced": 6}
_VARIANT_FIELDS = ("variant", "variant_id", "variant_name", "model_variant", "quality")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _first_text(sources: Iterable[Mapping[str, Any]], names: Sequence[str]) -> str | None:
    for source in sources:
        for name in names:
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return value
    return None


def credits_for(
    provider: str,
    kind: str | None,
    status: str | None,
    params: Mapping[str, Any] | None = None,
    raw: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> float | None:
    """The credits a job cost, where the provider tells it; ``None`` (NA) otherwise.

    See the module docstring for the rules. ``status`` other than ``succeeded`` gives ``None``.
    """
    if status != "succeeded":
        return None
    params = params or {}
    sources = [s for s in (raw, extras) if isinstance(s, Mapping)]
    for source in sources:
        for name in _COST_FIELDS:
            stated = _number(source.get(name))
            if stated is not None and stated >= 0:
                return stated
    if provider == "apiframe":
        kind = kind or "imagine"
        variant = str(params.get("type") or params.get("upscale_type") or "").lower()
        if kind.startswith("upscale") and variant in _APIFRAME_UPSCALES:
            return float(_APIFRAME_UPSCALES[variant])
        if kind in _APIFRAME_FAST_ONLY and str(params.get("process_mode", "")).lower() == "turbo":
            return None
        price = APIFRAME_CREDITS.get(kind)
        return float(price) if price is not None else None
    if provider == "blockade":
        for source in (params, *sources):
            for name in _VARIANT_FIELDS:
                value = source.get(name)
                if value is None:
                    continue
                text = str(value).lower()
                for word, price in BLOCKADE_VARIANT_CREDITS.items():
                    if word in text:
                        return float(price)
    return None


#: Image roles that are results (counted in ``n_images``, listed in ``image_urls``/``paths``);
#: a skybox's ``thumbnail`` and ``depth`` map and a grid composite are not.
RESULT_ROLES = frozenset({"image"})


def result_images(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The result images of a job record (role ``image``; a missing role counts as one)."""
    return [
        i for i in record.get("images") or []
        if isinstance(i, Mapping) and (i.get("role") or "image") in RESULT_ROLES
    ]


def derive_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """The common columns of a job record that need a provider's rules.

    Returns ``negative_prompt`` (text or ``None``), ``width`` and ``height`` (ints or ``None``)
    and ``credits`` (float or ``None``). ``record`` is a scrubbed
    :meth:`~jupyter_imagine.models.Job.to_record` dict.
    """
    params = record.get("params") if isinstance(record.get("params"), Mapping) else {}
    raw = record.get("raw") if isinstance(record.get("raw"), Mapping) else {}
    extras = record.get("extras") if isinstance(record.get("extras"), Mapping) else {}
    negative = _first_text((params,), _NEGATIVE_PARAMS) or _first_text((raw,), _NEGATIVE_RAW)
    width = height = None
    images = result_images(record)
    grid = record.get("grid") if isinstance(record.get("grid"), Mapping) else None
    for image in [*images, *([grid] if grid else [])]:
        w, h = image.get("width"), image.get("height")
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            width, height = w, h
            break
    return {
        "negative_prompt": negative,
        "width": width,
        "height": height,
        "credits": credits_for(
            str(record.get("provider") or ""),
            record.get("kind"),
            str(record.get("status") or ""),
            params,
            raw,
            extras,
        ),
    }


def check_frame(df: Any, what: str = "this") -> None:
    """Raise ``AttributeError`` with a clear message unless ``df`` has the key columns.

    The key columns (``provider`` and ``id``) may be columns or index levels.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise AttributeError(f"{what} needs a pandas DataFrame, not {type(df).__name__}")
    present = set(map(str, df.columns)) | {str(n) for n in df.index.names if n is not None}
    missing = [c for c in KEY_COLUMNS if c not in present]
    if missing:
        raise AttributeError(
            f"{what} needs the key columns 'provider' and 'id' (missing: "
            f"{', '.join(repr(m) for m in missing)}); use a frame from jupyter_imagine.history() "
            "or jupyter_imagine.batch(), or a slice of one that keeps those columns"
        )


# ===================================================================================== progress
class LiveText:
    """A one-line HTML status shown in the notebook and updated in place, from any thread.

    In a Jupyter kernel it is an ``ipywidgets.HTML`` (trait sets from the engine thread reach
    the browser live, also while a cell blocks), displayed with a ``display_id`` next to a
    static ``text/html`` copy that :meth:`close` (called from the caller's thread) replaces with
    the final state, so a saved notebook shows the outcome where widgets do not render.
    Elsewhere (scripts, plain IPython, tests) it shows nothing and the updates go to the log at
    DEBUG. Updates are throttled to ``min_interval`` seconds (default 0.1) except the last one.
    """

    def __init__(self, *, enabled: bool = True, min_interval: float = 0.1) -> None:
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._pending: str | None = None
        self._current = ""
        self._widget: Any = None
        self._handle: Any = None
        if enabled and _in_kernel():
            try:
                import ipywidgets
                from IPython.display import display

                self._widget = ipywidgets.HTML(value="")
                self._handle = display(self._bundle(""), raw=True, display_id=True)
            except Exception:  # no widgets: stay silent rather than break the call
                logger.debug("no progress display", exc_info=True)
                self._widget = None

    @property
    def shown(self) -> bool:
        """``True`` when there is a widget in the notebook."""
        return self._widget is not None

    def _bundle(self, markup: str) -> dict[str, Any]:
        return {
            "text/plain": _plain(markup) or "…",
            "text/html": markup,
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self._widget.model_id,
            },
        }

    def set(self, markup: str, *, force: bool = False) -> None:
        """Show ``markup`` (HTML), at most every ``min_interval`` seconds unless ``force``."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self.min_interval:
                self._pending = markup
                return
            self._last = now
            self._pending = None
            self._current = markup
        if self._widget is not None:
            self._widget.value = markup
        else:
            logger.debug("progress: %s", _plain(markup))

    def close(self, markup: str | None = None) -> None:
        """Show the final state (``markup``, or the last throttled update) in the widget and in
        the static copy."""
        with self._lock:
            final = markup if markup is not None else (self._pending or self._current)
            self._pending = None
        self.set(final, force=True)
        if self._handle is not None:
            try:
                self._handle.update(self._bundle(final), raw=True)
            except Exception:  # pragma: no cover - a display that went away
                logger.debug("could not update the progress display", exc_info=True)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _plain(markup: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", " ", markup)).strip()


def progress_bar(done: int, total: int | None, label: str) -> str:
    """HTML for one progress line: a ``<progress>`` bar (indeterminate without ``total``)."""
    value = f' value="{done}" max="{max(total, 1)}"' if total else ""
    return (
        f'<div style="display:flex;gap:.6em;align-items:center;font-family:var(--jp-ui-font-'
        f'family,sans-serif);font-size:12px"><progress{value} style="width:14em"></progress>'
        f"<span>{html.escape(label)}</span></div>"
    )


# ===================================================================================== remote pull
@dataclass
class PullReport:
    """What one provider's pull did (one row of :func:`sync`'s result)."""

    provider: str
    pages: int = 0
    total_pages: int | None = None
    listed: int = 0
    new: int = 0
    updated: int = 0
    refreshed: int = 0
    seconds: float = 0.0
    error: str | None = None
    state: str = "waiting"
    _started: float = field(default=0.0, repr=False)

    def label(self) -> str:
        pages = f"{self.pages}/{self.total_pages}" if self.total_pages else f"{self.pages}"
        text = f"{self.provider}: {self.state} · {pages} pages · {self.listed} listed"
        text += f" ({self.new} new)"
        if self.refreshed:
            text += f" · {self.refreshed} refreshed"
        if self.error:
            text += f" · failed: {self.error}"
        return text


#: Fields of a provider payload that say when a job started / finished running.
_STARTED_FIELDS = ("processing_at", "dispatched_at", "started_at", "startedAt", "processingAt")
_COMPLETED_FIELDS = ("completed_at", "completedAt", "finished_at", "finishedAt", "responseAt")
#: Downloads in flight at once while a pull adopts new succeeded jobs.
DOWNLOAD_CONCURRENCY = 8


def _when(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # epoch ms or s
        return datetime.fromtimestamp(seconds, timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def remote_times(
    remote: RemoteJob, *, synchronous: bool = False
) -> tuple[datetime | None, datetime | None]:
    """``(started_at, completed_at)`` of a remote job, from what its payload says.

    ``RemoteJob.started_at``/``completed_at`` when a provider sets them; else the payload's
    fields (Blockade ``processing_at``/``dispatched_at`` and ``completed_at``, TheNextLeg
    ``responseAt`` …); Banatie's ``processingTimeMs`` before ``updatedAt``; for a provider
    without a status lifecycle (``synchronous``: neuroflash answers with the images) both are
    the creation time. Unknown: ``None``.
    """
    raw = remote.update.raw if isinstance(remote.update.raw, Mapping) else {}
    inner = raw.get("request") if isinstance(raw.get("request"), Mapping) else raw
    started = _when(getattr(remote, "started_at", None))
    completed = _when(getattr(remote, "completed_at", None))
    for name in _STARTED_FIELDS:
        started = started or _when(inner.get(name))
    for name in _COMPLETED_FIELDS:
        completed = completed or _when(inner.get(name))
    millis = _number(inner.get("processingTimeMs"))
    if completed is None and millis is not None and remote.update.status.final:
        completed = _when(inner.get("updatedAt"))
    if started is None and completed is not None and millis is not None:
        from datetime import timedelta

        started = completed - timedelta(milliseconds=millis)
    created = _when(remote.created_at)
    if synchronous and created is not None:
        started = started or created
        completed = completed or (created if remote.update.status.final else None)
    if created is not None:  # clocks differ between fields; never before creation
        started = max(started, created) if started is not None else None
        completed = max(completed, created) if completed is not None else None
    if started is not None and completed is not None and completed < started:
        started = completed
    return started, completed


#: Items per page when a pull walks Blockade's ``myRequests`` (its maximum).
BLOCKADE_PAGE_SIZE = 100


async def _blockade_page(
    instance: Any, number: int
) -> tuple[list[RemoteJob], int | None, bool | None]:
    """Page ``number`` (0-based) of Blockade's ``myRequests``, oldest first: ``offset`` is the
    page number and ``totalCount`` gives the page count, so pages can be fetched at once.

    Oldest first (``order=ASC``) because requests made during the pull then land after the last
    page (caught by ``has_more``) instead of shifting every page under the fetches; and parents
    (remixed skyboxes) come before their remixes.
    """
    body = await instance.my_requests(limit=BLOCKADE_PAGE_SIZE, offset=number, order="ASC")
    items = [i for i in body.get("data") or [] if isinstance(i, Mapping)]
    total = _number(body.get("totalCount"))
    pages = math.ceil(total / BLOCKADE_PAGE_SIZE) if total is not None else None
    more = body.get("has_more")
    return [instance.remote_job(i) for i in items], pages, bool(more) if more is not None else None


#: Page-numbered listings for providers whose class has no ``remote_page`` (yet), built on
#: their public calls: provider name → ``async (instance, page_number) -> (jobs, pages, more)``.
PAGE_ADAPTERS: dict[str, Any] = {"blockade": _blockade_page}


def _overrides(instance: Provider, method: str) -> bool:
    from .providers import Provider

    mine = getattr(type(instance), method, None)
    return mine is not None and mine is not getattr(Provider, method, None)


def _pages_of(answer: Any) -> tuple[list[RemoteJob], int | None, bool | None]:
    """``(jobs, page_count, has_more)`` from what ``remote_page`` returned: an object with
    ``jobs`` and optional ``pages``/``total_pages``/``has_more``, or a tuple in that order."""
    if isinstance(answer, tuple):
        jobs, pages, more = [*answer, None, None][:3]
        return list(jobs or []), pages, more
    jobs = list(getattr(answer, "jobs", None) or [])
    pages = getattr(answer, "pages", None)
    if pages is None:
        pages = getattr(answer, "total_pages", None)
    return jobs, pages, getattr(answer, "has_more", None)


class _Pull:
    """One provider's pull, run on the engine loop."""

    def __init__(
        self,
        engine: Engine,
        report: PullReport,
        *,
        since: Any,
        download: bool,
        max_concurrency: int | None,
        changed: Any,
    ) -> None:
        from .providers import provider_class

        self.engine = engine
        self.report = report
        self.since = since
        self.download = download
        self.changed = changed
        cls = provider_class(report.provider)
        self.instance = engine.provider(cls.name, prepare=False)  # on the loop: no blocking
        self.name = cls.name
        limit = max_concurrency if max_concurrency is not None else cls.max_concurrency
        self.page_limit = max(1, int(limit))
        self.synchronous = not cls.status_map
        self.downloads = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self.unresolved: list[RemoteJob] = []
        self.seen: set[str] = set()

    async def run(self) -> None:
        report = self.report
        report._started = time.perf_counter()
        errors: list[str] = []
        for step in (self.refresh, self.listing, self.relink):
            try:
                await step()
            except asyncio.CancelledError:
                errors.append("cancelled")
                raise
            except Exception as exc:  # keep what was merged; say what failed
                from ._secrets import redact

                errors.append(redact(f"{type(exc).__name__}: {exc}"))
                logger.warning("%s: remote history pull stopped: %s", self.name, errors[-1])
            finally:
                report.error = "; ".join(errors) or None
                report.seconds = time.perf_counter() - report._started
        report.state = "failed" if errors else "done"
        self.changed()

    # ---------------------------------------------------------------- stored non-final jobs
    async def refresh(self) -> None:
        """Ask again about the stored jobs that are not final (APIFRAME: /fetch-many)."""
        from .models import Status
        from .providers import RemoteJob

        self.report.state = "refreshing"
        self.changed()
        records = self.engine.store.records(
            provider=self.name, status=[Status.QUEUED, Status.RUNNING]
        )
        jobs = []
        for record in records:
            if record.get("remote_id") and record.get("submit_state") == "sent":
                job = self.engine.get(record["id"])
                if not job.status.final:
                    jobs.append(job)
        if not jobs:
            return
        size = max(1, int(type(self.instance).poll_batch))
        limit = asyncio.Semaphore(self.page_limit)

        async def chunk(part: list[Any]) -> None:
            async with limit:
                updates = await self.engine.retry(
                    lambda: self.instance.poll_many(part), self.instance, idempotent=True
                )
            for job, update in zip(part, updates, strict=False):
                if job.status.final:
                    continue
                await self.engine.adopt(
                    self.name,
                    RemoteJob(remote_id=str(job.remote_id), kind=job.kind, prompt=job.prompt,
                              update=update),
                )
                self.report.refreshed += 1
            self.changed()

        await asyncio.gather(*(chunk(jobs[i : i + size]) for i in range(0, len(jobs), size)))

    # ---------------------------------------------------------------- what the provider lists
    async def listing(self) -> None:
        if self.since is None and self.page_source is not None:
            await self._numbered()
        elif _overrides(self.instance, "remote_history"):
            self.report.state = "listing"
            self.changed()
            async for page in self.instance.remote_history(since=self.since):
                await self.merge(list(page))
        else:
            return

    @property
    def page_source(self) -> Any:
        """``async (number) -> answer`` for page-numbered listings, else ``None``."""
        if _overrides(self.instance, "remote_page"):
            return lambda n: self.instance.remote_page(n)  # type: ignore[attr-defined]
        adapter = PAGE_ADAPTERS.get(self.name)
        return (lambda n: adapter(self.instance, n)) if adapter is not None else None

    async def _page(self, number: int) -> tuple[list[RemoteJob], int | None, bool | None]:
        source = self.page_source
        answer = await self.engine.retry(
            lambda: source(number), self.instance, idempotent=True
        )
        return _pages_of(answer)

    async def _numbered(self) -> None:
        """Page 0 first; once it tells the page count, the rest concurrently (at most
        ``page_limit`` in flight, merged in page order as they land); after the last known
        page, ``has_more`` (the list grew meanwhile, or no count was given) continues one by
        one until a page says there is no more or comes back empty."""
        self.report.state = "listing"
        self.changed()
        jobs, pages, more = await self._page(0)
        await self.merge(jobs, total_pages=pages)
        number = 1
        if pages is not None:
            limit = asyncio.Semaphore(self.page_limit)

            async def fetch(n: int) -> tuple[list[RemoteJob], int | None, bool | None]:
                async with limit:
                    return await self._page(n)

            tasks = [asyncio.ensure_future(fetch(n)) for n in range(1, pages)]
            try:
                for task in tasks:
                    jobs, _, more = await task
                    await self.merge(jobs)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            number = max(pages, 1)
        elif more is None:
            more = bool(jobs)  # neither a count nor has_more: walk until an empty page
        while more:
            jobs, count, more = await self._page(number)
            if not jobs:
                break
            await self.merge(jobs)
            number += 1
            if more is None:
                more = number < count if count is not None else True

    async def merge(self, page: list[RemoteJob], *, total_pages: int | None = None) -> None:
        """Adopt one page of remote jobs: the new final ones that need no download in one
        transaction, the others one by one (downloads bounded by
        :data:`DOWNLOAD_CONCURRENCY`)."""
        from .models import Status

        report = self.report
        if total_pages is not None:
            report.total_pages = total_pages

        def parent_of(remote: RemoteJob) -> str | None:
            if not remote.parent_remote_id:
                return None
            found = self.engine.store.find_remote(self.name, str(remote.parent_remote_id))
            if found is None:
                self.unresolved.append(remote)
                return None
            return str(found["id"])

        async def one(remote: RemoteJob, parent: str | None) -> None:
            started, completed = remote_times(remote, synchronous=self.synchronous)
            async with self.downloads:
                _, created = await self.engine.adopt(
                    self.name, remote, parent_id=parent, started_at=started,
                    completed_at=completed, download=self.download,
                )
            if created:
                report.new += 1
            else:
                report.updated += 1

        fresh = []
        for remote in page:  # a page may repeat an item of the previous one (lists shift)
            if str(remote.remote_id) not in self.seen:
                self.seen.add(str(remote.remote_id))
                fresh.append(remote)
        report.listed += len(fresh)
        parents = {str(r.remote_id): parent_of(r) for r in fresh}
        # The new final jobs that need no download go in one transaction; the rest one by one.
        bulk = [
            (r, parents[str(r.remote_id)], *remote_times(r, synchronous=self.synchronous))
            for r in fresh
            if r.update.status.final and not (self.download and r.update.status is Status.SUCCEEDED)
        ]
        # In a worker thread (the store is thread-safe), so the loop keeps fetching pages.
        left = {id(r) for r in await asyncio.to_thread(self.engine.adopt_many, self.name, bulk)}
        report.new += len(bulk) - len(left)
        bulked = {id(b[0]) for b in bulk}
        await asyncio.gather(*(
            one(r, parents[str(r.remote_id)]) for r in fresh if id(r) in left or id(r) not in bulked
        ))
        report.pages += 1
        if report.total_pages is not None and report.pages > report.total_pages:
            report.total_pages = report.pages
        self.changed()

    async def relink(self) -> None:
        """Children listed before their parents (newest-first lists): link them now."""
        for remote in self.unresolved:
            found = self.engine.store.find_remote(self.name, str(remote.parent_remote_id))
            if found is not None:
                await self.engine.adopt(self.name, remote, parent_id=found["id"])
        self.unresolved.clear()


def sync(
    engine: Engine,
    providers: Sequence[str],
    *,
    since: Any = None,
    download: bool = True,
    max_concurrency: int | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> pd.DataFrame:
    """Pull ``providers``' own history into ``engine``'s store; one report row per provider.

    Per provider, on the engine loop, all providers at once:

    1. **refresh**: the stored jobs that are not final yet are asked again through
       ``poll_many`` (APIFRAME batches 20 ids per ``/fetch-many``; others poll each, at most
       ``max_concurrency`` at once). This is all a pull does for APIFRAME and TheNextLeg, which
       have no list endpoint.
    2. **listing**: for a page-numbered API — a provider class with ``remote_page(n)``
       (0-based; returns ``(jobs, page_count, has_more)`` or an object with those attributes),
       or one with an adapter in :data:`PAGE_ADAPTERS` (Blockade's ``myRequests``, where
       ``offset`` is the page number and ``totalCount`` is known after page 0) — page 0 is
       fetched first and, once it tells the page count, the remaining pages concurrently, at
       most ``max_concurrency`` in flight (default: the provider's own), merged in page order;
       ``has_more`` is honoured after the last known page. With ``since``, or for other
       providers, ``remote_history(since=)`` is walked page by page (cursor / hasMore APIs:
       Banatie's generations, neuroflash's images).
    3. **relink**: children listed before their parents get their ``parent_id``.

    Every page is merged as it lands (:meth:`Engine.adopt`, keyed by ``(provider,
    remote_id)``), so a pull that fails half-way keeps what it got; its report row's ``error``
    says what failed and a ``RuntimeWarning`` names the provider. An interrupt (Ctrl-C / the
    stop button) cancels the pull and keeps what was merged.
    """
    import warnings

    import pandas as pd

    from .store import _utc

    since = _utc(since)  # datetime or ISO text (naive = UTC); bad text is an InvalidRequest
    reports = [PullReport(name) for name in providers]
    live = LiveText(enabled=progress)

    def changed() -> None:
        lines = "".join(
            progress_bar(r.pages, r.total_pages if r.state != "done" else r.pages or 1,
                         r.label())
            for r in reports
        )
        live.set(f"<div><b>remote history</b>{lines}</div>")

    async def run() -> None:
        pulls = []
        for report in reports:
            try:
                pulls.append(_Pull(engine, report, since=since, download=download,
                                   max_concurrency=max_concurrency, changed=changed))
            except Exception as exc:
                report.error, report.state = f"{type(exc).__name__}: {exc}", "failed"
        await asyncio.gather(*(p.run() for p in pulls))

    future = engine.run(run())
    try:
        future.result(timeout)
    except BaseException:
        future.cancel()
        raise
    finally:
        changed()
        live.close()
    frame = pd.DataFrame(
        [
            {
                "provider": r.provider,
                "pages": r.pages,
                "listed": r.listed,
                "new": r.new,
                "updated": r.updated,
                "refreshed": r.refreshed,
                "seconds": round(r.seconds, 3),
                "error": r.error,
            }
            for r in reports
        ],
        columns=["provider", "pages", "listed", "new", "updated", "refreshed", "seconds",
                 "error"],
    )
    failed = [r for r in reports if r.error]
    if failed:
        warnings.warn(
            "remote history pull failed for "
            + "; ".join(f"{r.provider} ({r.error})" for r in failed)
            + " — what was fetched before the failure is kept",
            RuntimeWarning,
            stacklevel=3,
        )
    return frame
