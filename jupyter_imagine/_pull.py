"""The remote pull: what each provider itself knows, merged into the local history.

:func:`sync` walks every provider's own listing (and asks again about the stored jobs that are
not final yet), adopting each remote job through the engine's public surface
(:meth:`Engine.adopt <jupyter_imagine.engine.Engine.adopt>`, keyed by ``(provider,
remote_id)``), so pulling twice adds nothing the second time. The sandbox's sample rows
(``jupyter_imagine.sandbox.SAMPLE_REMOTE_IDS``) are left out: the user never made them.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._display import Progress
from ._schema import as_number
from ._secrets import get_logger, redact
from .models import Status, WaitInterrupted
from .providers import Provider, RemoteJob, provider_class
from .store import to_utc

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .engine import Engine

__all__ = ["BLOCKADE_PAGE_SIZE", "PAGE_ADAPTERS", "PullReport", "remote_times", "sync"]

logger = get_logger(__name__)


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
        """One line for a person: what the pull did (or is doing), without empty counts.

        ``"blockade: 2 pages · 230 listed · 12 new · 3 updated"``, ``"apiframe: nothing to
        pull"``, ``"banatie: listing · page 1 of 3 · 100 listed"``, ``"neuroflash: failed —
        NetworkError: …"``.
        """
        counts = [f"{n} {what}" for n, what in (
            (self.listed, "listed"), (self.new, "new"), (self.updated, "updated"),
            (self.refreshed, "refreshed"),
        ) if n]
        if self.state == "done" and not counts:  # pages read, all empty or samples
            return f"{self.provider}: nothing to pull"
        if self.state in ("done", "failed"):
            pages = [f"{self.pages} page{'' if self.pages == 1 else 's'}"] if self.pages else []
            if self.state == "done":
                return f"{self.provider}: " + " · ".join(pages + counts)
            text = f"{self.provider}: failed — {self.error or 'no reason given'}"
            return text + (f" (kept: {' · '.join(counts)})" if counts else "")
        if self.total_pages:
            page = [f"page {min(self.pages + 1, self.total_pages)} of {self.total_pages}"]
        else:
            page = [f"{self.pages} page{'' if self.pages == 1 else 's'}"] if self.pages else []
        return f"{self.provider}: " + " · ".join([self.state, *page, *counts])


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
    millis = as_number(inner.get("processingTimeMs"))
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
    total = as_number(body.get("totalCount"))
    pages = math.ceil(total / BLOCKADE_PAGE_SIZE) if total is not None else None
    more = body.get("has_more")
    return [instance.remote_job(i) for i in items], pages, bool(more) if more is not None else None


#: Page-numbered listings for providers whose class has no ``remote_page`` (yet), built on
#: their public calls: provider name → ``async (instance, page_number) -> (jobs, pages, more)``.
PAGE_ADAPTERS: dict[str, Any] = {"blockade": _blockade_page}


def _overrides(instance: Provider, method: str) -> bool:
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


def _sandbox_samples(provider: str) -> frozenset[str]:
    """The remote ids of the sample jobs the sandbox seeds for ``provider``: never the user's
    own, so a pull from the sandbox leaves them out."""
    from .sandbox import SAMPLE_REMOTE_IDS

    return SAMPLE_REMOTE_IDS.get(provider, frozenset())


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
        self.samples = _sandbox_samples(self.name) if self.instance.sandbox else frozenset()

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
            if str(remote.remote_id) in self.samples:
                logger.debug("%s: leaving out the sandbox's sample job %s", self.name,
                             remote.remote_id)
            elif str(remote.remote_id) not in self.seen:
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


_REPORT_COLUMNS = ("provider", "pages", "listed", "new", "updated", "refreshed", "seconds",
                   "error")


def _pull_label(providers: Sequence[str]) -> str:
    """``"remote history of blockade"``, ``"remote history of 5 providers"``."""
    if len(providers) == 1:
        return f"remote history of {providers[0]}"
    return f"remote history of {len(providers)} providers"


def _finish(future: Any, timeout: float | None) -> None:
    """Wait for the pull; on Ctrl-C (one line) or any error, cancel it first."""
    try:
        future.result(timeout)
    except KeyboardInterrupt:
        future.cancel()
        raise WaitInterrupted(
            None, "stopped the remote history pull; what it fetched is kept — call "
            "ji.sync_history() again to go on"
        ) from None
    except BaseException:
        future.cancel()
        raise


def _report_frame(reports: Sequence[PullReport]) -> pd.DataFrame:
    """One row per provider's pull: its counts, seconds and error."""
    import pandas as pd

    rows = [
        {**{name: getattr(r, name) for name in _REPORT_COLUMNS}, "seconds": round(r.seconds, 3)}
        for r in reports
    ]
    return pd.DataFrame(rows, columns=list(_REPORT_COLUMNS))


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
    stop button) cancels the pull, keeps what was merged and raises
    :class:`~jupyter_imagine.models.WaitInterrupted` (a ``KeyboardInterrupt``; one line).
    """
    since = to_utc(since)  # datetime or ISO text (naive = UTC); bad text is an InvalidRequest
    reports = [PullReport(name) for name in providers]
    bar = Progress(_pull_label(providers), len(reports), unit="provider", enabled=progress,
                   rate=False)

    def changed() -> None:
        final = [r for r in reports if r.state in ("done", "failed")]
        bar.update(len(final), failed=sum(r.state == "failed" for r in final),
                   lines=[r.label() for r in reports])

    async def run() -> None:
        pulls = []
        for report in reports:
            try:
                pulls.append(_Pull(engine, report, since=since, download=download,
                                   max_concurrency=max_concurrency, changed=changed))
            except Exception as exc:
                report.error, report.state = f"{type(exc).__name__}: {exc}", "failed"
        await asyncio.gather(*(p.run() for p in pulls))

    try:
        _finish(engine.run(run()), timeout)
    finally:
        changed()
        bar.close()
    frame = _report_frame(reports)
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

