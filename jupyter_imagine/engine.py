"""The background engine: one thread, one asyncio loop, every job's life.

ipykernel runs its own asyncio loop and does not process comm messages while a cell runs, so the
engine never touches it: it owns **one daemon thread with its own loop**, where the shared
``httpx.AsyncClient``\\s live. Public calls validate and persist in the caller's thread, then hand a
coroutine to the loop with :func:`asyncio.run_coroutine_threadsafe` and return the :class:`Job` at
once. ``Job.wait()`` blocks on a ``concurrent.futures.Future``; ``await job`` wraps the same future
for the caller's loop. No ``nest_asyncio``.

Per job (:meth:`Engine._drive`, the methods of the section "one job's life" in this order):

1. wait for a slot of the provider's concurrency limit (the job shows ``queued``);
2. reserve the job's expected cost (:meth:`Provider.price
   <jupyter_imagine.providers.Provider.price>`) against its budgets in the store
   (:mod:`jupyter_imagine._budgets`): a job that would pass one fails with
   :class:`~jupyter_imagine.errors.BudgetExceeded`, never sent; then submit — **never retried
   blindly**: only a connection that provably never reached the server, or a 429 (the server
   refused without doing anything), is tried again;
3. poll, adaptively: the first interval is the provider's, it grows ×1.5 while progress stands
   still and falls back when progress moves; polls of many jobs of one provider are batched
   (APIFRAME ``/fetch-many``); 5xx, 429 (``Retry-After`` honoured) and network errors back off
   exponentially with jitter (:mod:`jupyter_imagine._polling`);
4. on success download every image once into the store's content-addressed cache, then show the
   job as succeeded; a job past its deadline fails with :class:`~jupyter_imagine.errors.JobTimeout`.
   Once final, its reservation is settled with the recorded cost, or released.

Every state change is written to the store before it is applied to the job and shown, as a
compare-and-set on the row's version (:meth:`Store.transition
<jupyter_imagine.store.Store.transition>`): a final state is never left, and a refused write means
someone else holds the job now, so this engine stops driving it.

**Many kernels, one history.** Each engine has an owner id; the jobs it creates are stored under
its lease (``lease_seconds``), which a heartbeat on the loop renews every third of that. Only the
owner submits and polls. On start, and at every heartbeat, the engine claims the unfinished jobs
nobody holds (no owner, or a lease that ran out: a dead kernel's) and resumes them. A job another
live engine holds is *followed*: a watcher re-reads its row's version every
:data:`FOLLOW_INTERVAL` s (on the team store at once: PostgreSQL notifies every write) and
applies what changed, never calling the provider, until the row is final or this engine claims
it. :meth:`Engine.close` releases the leases (another kernel may take
over at once) and closes the store. A job whose submit was in flight when its kernel died is not
sent again (it may have reached the provider): it fails with a reason saying so. If the store
cannot be written, the job fails in memory with the :class:`~jupyter_imagine.errors.StorageError`
and ``wait()`` raises it; once the store answers again, the heartbeat takes a job that had
reached its provider back and drives it to its end (a new :class:`Job`, which
``jupyter_imagine.job(id)`` returns), and stores one never sent as failed, as its user was told.

What other modules use (``_batch``, the remote pull, the magics, the widgets):
:meth:`Engine.provider` (the configured instance of a provider), :meth:`Engine.run` (a coroutine
onto the loop),
:meth:`Engine.retry` (a call with the engine's back-off), :meth:`Engine.defer`, and the job calls
(:meth:`~Engine.imagine`, :meth:`~Engine.act`, :meth:`~Engine.get`, :meth:`~Engine.adopt` …).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from . import _budgets, _config
from ._downloads import fetch_many, png_text, retry_delay
from ._outage import Outage
from ._polling import PollBatcher, RetryPolicy, jittered, next_interval
from ._secrets import MASK, get_logger, redact, scrub, split_secrets
from ._transport import pooled
from .errors import (
    ConfigurationError,
    ImagineError,
    JobTimeout,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    StorageError,
)
from .models import Image, Job, JobChanges, Status, check_timeout, utcnow
from .providers import PROVIDERS, Provider, RemoteJob, Update, provider_class
from .store import Store

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

logger = get_logger(__name__)

__all__ = ["Engine"]

T = TypeVar("T")

#: Seconds between two looks of a follower at the rows of the jobs it follows.
FOLLOW_INTERVAL = 0.5
#: The fields a stored row can change on a job (what a follower copies from the store).
_CHANGEABLE = tuple(JobChanges.__annotations__)


class _Superseded(Exception):
    """A transition was refused: the row is final, or another engine holds it now. The job
    has been brought up to date from the store (and follows it if it is not final); whoever
    was driving it stops."""


_MISSING_ERROR = "some images could not be downloaded"


def _image_key(image: Image) -> tuple[str | None, str, int | None]:
    """What identifies one image of a job across its copies: URL, role, index."""
    return image.url, image.role, image.index


def _missing_error(images: Sequence[Image]) -> str | None:
    """The job's error note while some of its ``images`` are missing, else ``None``."""
    notes = [image.missing for image in images if image.missing]
    return f"{_MISSING_ERROR}: {notes[0]}" if notes else None



def _credentials(settings: _config.ProviderSettings, home: Path) -> str:
    """One text of everything that decides whose account a job is on (fingerprinted by the
    store, never stored): base URL, key and extra credentials; for the in-process sandbox, the
    machine and home its tasks live in."""
    parts = [settings.base_url, settings.api_key or "", *(f"{k}={v}" for k, v in settings.extra)]
    if settings.in_process:
        parts += [socket.gethostname(), str(home)]
    return "\n".join(parts)

class Engine:
    """Runs jobs on a background loop and keeps the store in step.

    Args:
        store: where jobs and images are kept.
        concurrency: jobs in flight per provider, e.g. ``{"apiframe": 30}`` (default: each
            provider's ``max_concurrency``).
        sandbox_speed: clock speed of the in-process sandbox (default
            ``JUPYTER_IMAGINE_SANDBOX_SPEED`` or 10); polling intervals in the sandbox are divided
            by it, so sandbox jobs are watched as closely as real ones relative to their length.
        backoff_base: first back-off delay in seconds (default 0.5); doubles per attempt.
        backoff_cap: longest back-off delay in seconds (default 30).
        retry_for: seconds during which one request is retried after temporary errors (default
            180). A poll that runs out of them does not fail its job: polling goes on, backing
            off up to ``backoff_cap``, until the job's deadline.
        max_retries: an optional cap on the retries of one request as well (default ``None``:
            only ``retry_for`` counts).
        http_timeout: seconds for one HTTP request (default 30).
        max_connections: HTTP connections to the network, and requests in flight, at most
            (default 32, in pools of 2, all kept alive while idle: see :mod:`._transport`); more
            requests wait their turn in the engine, not in httpcore's pools, whose bookkeeping
            grows with their queues and connections.
        sandbox_app: the in-process sandbox ASGI app to use (default: a new one, made on first
            use); engines given the same app share its tasks, as a restarted kernel would share
            a real service.
        lease_seconds: how long this engine's hold on its unfinished jobs lasts without a
            heartbeat (default ``JUPYTER_IMAGINE_LEASE_SECONDS`` or 30); the heartbeat renews it
            every third of that. Another engine takes a job over only once its lease ran out.

    Attributes:
        owner: this engine's owner id in the store, ``"<host>:<pid>:<8 hex digits>"``.
    """

    def __init__(
        self,
        store: Store,
        *,
        concurrency: Mapping[str, int] | None = None,
        sandbox_speed: float | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_for: float = 180.0,
        max_retries: int | None = None,
        http_timeout: float = 30.0,
        max_connections: int = 32,
        sandbox_app: Any = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = float(lease_seconds or _config.lease_seconds())
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = dict(concurrency or {})
        self.sandbox_speed = sandbox_speed if sandbox_speed is not None else _config.sandbox_speed()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_for = retry_for
        self.max_retries = max_retries
        self.http_timeout = http_timeout
        self.max_connections = max_connections
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, concurrent.futures.Future[None]] = {}
        self._providers: dict[str, Provider] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._batchers: dict[str, PollBatcher] = {}
        self._prepared: set[int] = set()  # id() of the provider instances whose prepare() ran
        self._cancelled: set[str] = set()
        self._following: dict[str, Job] = {}  # jobs another engine drives: watched in the store
        self._watcher: asyncio.Task[None] | None = None
        self._heartbeat: concurrent.futures.Future[None] | None = None
        self._abandoned: set[str] = set()  # failed in memory: the store could not be written
        # job id → the event that starts its next round of missing-image retries
        self._refetching: dict[str, asyncio.Event | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False  # close() ran: its store is closed, so it never starts again
        self._retiring = False  # retire() ran: it claims no more jobs, and closes when idle
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._sandbox_app: Any = sandbox_app
        #: when this engine was made: the start of budgets over the ``session`` period
        self.started_at = utcnow()
        self._call_budgets: dict[str, _budgets.CallBudget] = {}  # job id → its call's budget=
        self._held: set[str] = set()  # jobs that may hold a reservation: closed once final

    # ================================================================ lifecycle
    @property
    def running(self) -> bool:
        """``True`` while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Engine:
        """Start the thread, claim the unfinished jobs nobody holds (no owner, or an expired
        lease) and resume them, and start the heartbeat (idempotent).

        Raises:
            ImagineError: the engine was closed (its store with it); make a new one.
        """
        with self._lock:
            if self.running:
                return self
            if self._closed:
                raise self._closed_error()
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name="jupyter-imagine-engine", daemon=True)
            self._loop = loop
            self._thread.start()
            ready.wait()
            self._heartbeat = asyncio.run_coroutine_threadsafe(self._beat(), loop)
        self._register_credentials()
        if not self._retiring:
            self._claim()
        self._resume_downloads()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling, release this engine's leases (another engine may take its unfinished
        jobs over at once; they resume next start otherwise) and close the store."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._loop = self._thread = None
            self._closed = True  # a late defer() or run() must not start it on a closed store

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in self._clients.values():
                await client.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            logger.warning("engine shutdown timed out")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
        self._clients.clear()
        self._providers.clear()
        self._semaphores.clear()
        self._batchers.clear()
        self._prepared.clear()
        self._tasks.clear()
        self._following.clear()
        self._watcher = self._heartbeat = None
        try:
            self.store.release(self.owner)
        except ImagineError as exc:
            logger.warning("could not release the leases of %s: %s", self.owner, exc)
        self.store.close()

    def _closed_error(self) -> ImagineError:
        """What starting this closed engine again (for a job of its) raises."""
        if self._retiring:  # the session moved to another history (retire)
            where = getattr(self.store, "url", None) or str(self.store.home)
            return ImagineError(
                f"this job's history, {self.store.path}, was left for another "
                "(jupyter_imagine.configure(store=…)); to act on its jobs, switch back with "
                f"jupyter_imagine.configure(store={where!r}) and load the job again with "
                "jupyter_imagine.job(its id)"
            )
        return ImagineError(
            f"the engine {self.owner} was closed, and its history store with it; make a new "
            "Engine, or call jupyter_imagine.configure(store=…) for a new session engine"
        )

    def retire(self) -> None:
        """Close this engine once every job it drives or follows has ended (at once if none);
        what :func:`jupyter_imagine.configure` does with the session's engine when the session
        moves to another history. Meanwhile it takes no other engine's jobs over, while its own
        (and children started from them) go on to their end in the history they started in:
        nobody is left waiting on a job that no engine drives."""
        self._retiring = True

        def close_when_done() -> None:
            while True:
                with self._lock:
                    pending = [job.future for job in self._jobs.values() if not job.done]
                if not pending:
                    break
                concurrent.futures.wait(pending)
            self.close()

        threading.Thread(target=close_when_done, name="jupyter_imagine-retire",
                         daemon=True).start()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ================================================================ ownership
    def _register_credentials(self) -> None:
        """Give the store the fingerprint of every provider's credentials this kernel has, so
        it claims only jobs made with the same ones (a teammate's job waits for the teammate).
        A provider that cannot be configured here has none: its jobs are not claimed."""
        for cls in PROVIDERS.values():
            try:
                settings = cls.env_settings()
            except ConfigurationError:
                continue
            self.store.fingerprint(cls.name, _credentials(settings, self.store.home))

    def _claim(self, job_id: str | None = None, *, own: bool = False) -> list[Job]:
        """Claim the unfinished jobs nobody holds (only ``job_id`` if given; with ``own``,
        this engine's released ones too) and drive them; a job this engine followed becomes
        its own. Returns the jobs claimed."""
        claimed = []
        for record in self.store.claim(self.owner, self.lease_seconds, time.time(),
                                       job_id=job_id, own=own):
            with self._lock:
                job = self._jobs.get(record["id"])
                self._following.pop(record["id"], None)
            if job is None or job.status.final:
                job = self._attach(Job.from_record(record))
            else:
                self._sync(job, record)
            logger.info("resuming %s job %s (%s)", job.provider, job.id, job.status.value)
            self._held.add(job.id)  # its former owner may have reserved its cost
            self._schedule(job)
            claimed.append(job)
        return claimed

    async def _beat(self) -> None:
        """The heartbeat: every third of the lease, renew this engine's leases (one UPDATE)
        and claim the jobs whose owner's lease ran out (a dead kernel's). While the store
        fails, that is said once (a warning), and once more when it answers again."""
        outage = Outage(logger, f"heartbeat of {self.owner}")
        every = f"trying again every {self.lease_seconds / 3:.3g} s"
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            worked = True
            for step in (self._take_back, self._renew_and_claim):
                try:
                    step()
                except ImagineError as exc:
                    outage.failed(exc, every)
                    worked = False
            if worked:
                outage.worked("the history answers again")

    def _renew_and_claim(self) -> None:
        self.store.renew(self.owner, time.time() + self.lease_seconds)
        if not self._retiring:
            self._claim()

    def _take_back(self) -> None:
        """The jobs a storage failure dropped (:meth:`_abandon`), once the store answers
        again. Each that may have reached its provider (sent, or being sent) is released and
        claimed back, and driven here at once as a new :class:`Job` (the dropped one stays
        failed). One never sent is stored failed, as its user was told: no engine may send
        it later behind the back of someone who has perhaps run it again."""
        if not self._abandoned:
            return
        ids = sorted(self._abandoned)
        self.store.release(self.owner, ids)
        for job_id in ids:
            record = self.store.current(job_id)
            if record is not None and record.get("submit_state") in ("sent", "sending"):
                self._claim(job_id, own=True)
            elif record is not None:
                with self._lock:
                    dropped = self._jobs.get(job_id)
                if dropped is not None and dropped.status.final:
                    self.store.transition(job_id, record["version"], dropped.to_record())
            with self._lock:
                self._abandoned.discard(job_id)

    def _follow(self, job: Job) -> None:
        """Watch ``job``'s stored row (another engine drives it) until it is final."""
        with self._lock:
            self._following[job.id] = job
        if self._loop is None:
            return

        def ensure() -> None:
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.ensure_future(self._watch())

        if threading.current_thread() is self._thread:
            ensure()
        else:
            self._loop.call_soon_threadsafe(ensure)

    async def _watch(self) -> None:
        """Every :data:`FOLLOW_INTERVAL` s — at once on the team store, which notifies every
        write — one cheap query of the followed jobs' versions; the full row only of those that
        moved, applied to the job (never a provider call)."""
        outage = Outage(logger, f"following jobs in {self.store.path}")
        while True:
            with self._lock:
                following = dict(self._following)
            if not following:
                return
            try:
                self._catch_up(following)
            except ImagineError as exc:
                outage.failed(exc, f"trying again every {FOLLOW_INTERVAL:g} s")
            else:
                outage.worked("the history answers again")
            await self.store.wait_for_change(FOLLOW_INTERVAL)

    def _catch_up(self, following: Mapping[str, Job]) -> None:
        """Bring the ``following`` jobs whose stored version moved up to their rows; stop
        following those that ended or were deleted."""
        versions = self.store.versions(following)
        for job_id, job in following.items():
            if versions.get(job_id, job.version) == job.version:
                continue
            record = self.store.current(job_id)
            if record is not None:
                self._sync(job, record)
            if record is None or job.status.final:
                with self._lock:
                    self._following.pop(job_id, None)

    def _sync(self, job: Job, record: Mapping[str, Any]) -> None:
        """Bring ``job`` to the stored ``record`` (with its version); a final state is kept."""
        stored = Job.from_record(record)
        changes: dict[str, Any] = {
            name: getattr(stored, name)
            for name in _CHANGEABLE
            if getattr(stored, name) != getattr(job, name)
        }
        if job.status.final and changes.get("status", job.status) is not job.status:
            logger.warning("job %s is %s here; the store says %s: kept", job.id,
                           job.status.value, stored.status.value)
            return
        job.version = stored.version
        job._apply(changes)  # type: ignore[arg-type]

    # ================================================================ public calls
    def imagine(
        self,
        prompt: str,
        *,
        provider: str,
        kind: str = "imagine",
        timeout: float | None = None,
        parent: Job | None = None,
        batch_id: str | None = None,
        batch_row: int | None = None,
        budget: float | None = None,
        **params: Any,
    ) -> Job:
        """Validate, store and schedule a new job; returns it at once (status ``queued``).

        ``kind`` is one of the provider's ``kinds`` (default ``imagine``); ``parent`` (default
        ``None``) links jobs that work on another job without being one of its buttons
        (APIFRAME's ``seed``). ``batch_id``/``batch_row`` (default ``None``) make the job that
        row of a :func:`jupyter_imagine.batch`, stored in the same transaction as the job itself;
        a row another job already holds raises ``InvalidRequest``. ``budget`` (default ``None``)
        is the call's own budget in the provider's unit: the job's expected cost (with a
        ``batch_id``: all of that batch's) may not pass it (see :mod:`jupyter_imagine._budgets`).
        """
        instance = self.provider(provider)
        cls = type(instance)
        timeout = check_timeout(timeout)
        limit = _budgets.check_amount(budget)
        if kind not in cls.kinds:
            raise ConfigurationError(
                f"{cls.label} cannot start a {kind!r} job; it can: {', '.join(cls.kinds)}"
            )
        clean = instance.validate(kind, prompt, params)
        job = Job(
            provider=cls.name,
            kind=instance.job_kind(kind),
            prompt=prompt.strip(),
            params=clean,
            parent_id=parent.id if parent is not None else None,
            sandbox=instance.sandbox,
            batch_id=batch_id,
            batch_row=batch_row,
            timeout=float(timeout) if timeout else cls.default_timeout,
        )
        self._bind_secrets(job, cls, source=parent)
        if limit is not None:
            self._call_budgets[job.id] = _budgets.CallBudget(limit, batch_id)
        return self._launch(job)

    def act(self, job: Job, label: str, **kwargs: Any) -> Job:
        """Start the child job of action ``label`` on ``job`` (called by :meth:`Job.act`)."""
        instance = self.provider(job.provider, prepare=False)
        timeout = check_timeout(kwargs.pop("timeout", None))
        spec = instance.child(job, label, **kwargs)
        params = dict(spec.params)
        for name, data in spec.files.items():
            params[f"{name}_path"] = str(self.store.put_file(data, ext="png"))
        child = Job(
            provider=job.provider,
            kind=spec.kind,
            prompt=spec.prompt,
            params=params,
            parent_id=job.id,
            action=label,
            sandbox=job.sandbox,
            timeout=float(timeout) if timeout else type(instance).default_timeout,
        )
        self._bind_secrets(child, type(instance), source=job)
        return self._launch(child)

    def rerun(self, job: Job, prompt: str | None = None, **params: Any) -> Job:
        """A new job of ``job``'s provider with ``prompt`` (default: ``job``'s) and its
        parameters (``params`` override them; ``timeout=`` too), linked to ``job`` as its
        parent: what :meth:`Job.reroll` starts where the provider offers no 🔄."""
        cls = provider_class(job.provider)
        kept = {k: v for k, v in job.params.items() if k in cls.params and v is not None}
        kind = "imagine" if "imagine" in cls.kinds else cls.kinds[0]
        return self.imagine(prompt if prompt is not None else job.prompt, provider=job.provider,
                            kind=kind, parent=job, **{**kept, **params})

    def _bind_secrets(self, job: Job, cls: type[Provider], source: Job | None = None) -> None:
        """Keep the secret parameters of ``job`` (``ParamSpec.secret``) out of its params —
        they hold a mask, the live values stay in ``job._secrets`` — and give every masked one
        its value: the one given, ``source``'s (a child's parent, default ``None``), or the
        ``<PROVIDER>_<NAME>`` environment variable.

        Raises:
            ConfigurationError: a secret is needed and none of these has it (nothing is sent
                with a mask).
        """
        names = frozenset(name for name, spec in cls.params.items() if spec.secret)
        if not names:
            return
        job.params, live = split_secrets(job.params, names)
        job._secrets.update(live)
        for name in sorted(names):
            if job.params.get(name) != MASK or name in job._secrets:
                continue
            value = source._secrets.get(name) if source is not None else None
            var, configured = _config.secret_param(cls.name, name)
            value = value or configured
            if value is None:
                raise ConfigurationError(
                    f"{cls.label} job {job.id[:8]} needs its {name}, which is never stored: "
                    f"set {var}, or start a new job with {name}="
                )
            job._secrets[name] = value

    def cancel(self, job: Job) -> None:
        """Cancel ``job``: stop polling, ask the provider to cancel where it can, mark it."""
        if job.status.final:
            return
        self._cancelled.add(job.id)
        self.run(self._cancel(job))

    def get(self, key: str) -> Job:
        """The job with local id, provider id or unique id prefix ``key``.

        A stored unfinished job nobody holds is claimed and resumed here; one that another
        engine holds (a live lease) is followed: the job shows the states that engine stores,
        and this one never polls the provider for it, until that lease runs out.
        """
        with self._lock:
            job = self._jobs.get(key)
        if job is not None:
            return job
        record = self.store.get(key)
        if record is None:
            raise NotFound(
                f"no job {key!r} in the history at {self.store.path}; "
                "list ids with jupyter_imagine.history()"
            )
        with self._lock:
            if record["id"] in self._jobs:
                return self._jobs[record["id"]]
        if record.get("status") not in ("succeeded", "failed", "cancelled"):
            for claimed in self._claim(record["id"]):
                return claimed
        current = self.store.current(record["id"])
        if current is None:  # deleted meanwhile
            raise NotFound(f"job {key!r} was just deleted from the history at {self.store.path}")
        with self._lock:
            if current["id"] in self._jobs:  # claimed meanwhile by this engine's heartbeat
                return self._jobs[current["id"]]
        job = self._attach(Job.from_record(current))
        if not job.status.final:
            self._follow(job)
        return job

    def call(self, provider: str, method: str, *args: Any, timeout: float | None = None,
             **kwargs: Any) -> Any:
        """Run the provider's coroutine method ``method(*args, **kwargs)`` on the engine loop and
        return its result (for calls that are not jobs: ``account()``, ``styles()`` …).

        Reads (GET) are retried like polls; anything else is one attempt unless it provably never
        reached the server.
        """
        instance = self.provider(provider, prepare=False)
        fn = getattr(instance, method, None)
        if method.startswith("_") or fn is None or not asyncio.iscoroutinefunction(fn):
            raise ConfigurationError(f"{instance.label} has no call {method!r}")
        idempotent = getattr(fn, "idempotent", False)
        coro = self.retry(lambda: fn(*args, **kwargs), instance, idempotent=idempotent)
        return self.run(coro).result(timeout if timeout is not None else self.http_timeout * 4)

    def defer(
        self, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Run the plain callable ``fn`` on the engine thread; its result or error lands in the
        returned future. Widget message handlers use this so they never block or write traits.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        if self._loop is None:
            self.start()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(run)
        return future

    # ================================================ one job's life (steps 1-4 of the docstring)
    async def _drive(self, job: Job) -> None:
        try:
            await self._drive_steps(job)
        finally:
            if job.status.final:
                self._close_reservation(job)

    async def _drive_steps(self, job: Job) -> None:
        try:
            provider = self.provider(job.provider, prepare=False)
        except ImagineError as exc:
            self._fail(job, exc)
            return
        try:
            async with self._semaphore(provider):
                if job.id in self._cancelled:
                    return
                if job.submit_state == "sending":
                    self._fail(
                        job,
                        f"the session stopped while this job was being sent to {provider.label}; "
                        "it may or may not have reached the service, so it was not sent again — "
                        "check the provider's dashboard or start it anew",
                        "ServiceUnavailable",
                    )
                    return
                if job.submit_state == "pending":
                    refusal = self._reserve(job, provider)
                    if refusal is not None:
                        self._fail(job, refusal)
                        return
                    done = await self._submit(job, provider)
                    if done:
                        return
                # The deadline counts from submission, not from the wait for a free slot.
                started = (job.started_at or utcnow()).timestamp()
                deadline = started + (job.timeout or provider.default_timeout)
                await self._poll_until_final(job, provider, deadline)
        except asyncio.CancelledError:
            if job.id in self._cancelled:
                return
            raise  # engine shutdown: the job stays unfinished and resumes next start
        except _Superseded:
            return  # final, or another engine drives it now (this one follows it)
        except ImagineError as exc:  # a StorageError has failed the job in memory already
            self._settle(job, exc)
        except Exception as exc:  # a bug must not leave a job hanging
            logger.exception("internal error while running job %s", job.id)
            self._settle(job, f"internal error ({type(exc).__name__}: {exc})", "ImagineError")

    def _settle(self, job: Job, error: BaseException | str, error_type: str | None = None) -> None:
        """Fail ``job`` unless it is final, whatever the store says (see :meth:`_change`)."""
        if not job.status.final:
            with contextlib.suppress(_Superseded, StorageError):
                self._fail(job, error, error_type)

    def _reserve(self, job: Job, provider: Provider) -> ImagineError | None:
        """Reserve ``job``'s expected cost against its budgets (see :mod:`._budgets`); the
        refusal, else ``None``. A job nothing prices is sent uncounted (with a warning when a
        budget applies)."""
        call = self._call_budgets.get(job.id)
        price = type(provider).price(job.kind, job.params)
        if price is None:
            if call is not None or provider.name in _config.budget_rules():
                logger.warning("%s publishes no price for a %s job: budgets cannot count %s",
                               provider.label, job.kind, job.id)
            return None
        budgets = _budgets.budgets_for(provider.name, price, call, self.started_at)
        if not budgets:
            return None
        refusal = _budgets.reserve(self.store, job, price, budgets)
        if refusal is None:
            self._held.add(job.id)
        return refusal

    def _close_reservation(self, job: Job) -> None:
        """Settle a final job's reservation with its recorded cost, or release it (none)."""
        self._call_budgets.pop(job.id, None)
        if job.id not in self._held:
            return  # nothing was reserved for it (no budget applied): no write
        self._held.discard(job.id)
        try:
            cost = provider_class(job.provider).cost(job.to_record())
            if cost is None:
                self.store.release_reservation(job.id)
            else:
                self.store.settle(job.id, cost.amount)
        except ImagineError as exc:
            logger.warning("could not close the reservation of job %s: %s", job.id, exc)

    async def _submit(self, job: Job, provider: Provider) -> bool:
        """Send the job; returns ``True`` when the answer already finished it."""
        parent = self.get(job.parent_id) if job.parent_id else None
        self._bind_secrets(job, type(provider), source=parent)  # a resumed job has none live
        self._change(job, submit_state="sending")
        sent_at = utcnow()
        live = job.with_secrets()
        try:
            submission = await self.retry(
                lambda: provider.submit(live, parent), provider, idempotent=False
            )
        except ServiceUnavailable as exc:
            if not exc.reached_server:
                raise
            said = str(exc)
            if "may have reached" not in said:
                said += f"; it may have reached {provider.label}"
            raise ServiceUnavailable(
                f"{said} and be running there, so it was not sent again: check with "
                f"jupyter_imagine.sync_history({provider.name!r}) or on {provider.label}'s own "
                "history before starting it anew",
                provider=provider.name, status_code=exc.status_code,
            ) from None
        # ``started_at`` is when the provider started working: for an answer that is already
        # the result (neuroflash), when we sent it; otherwise when a poll first says running.
        answered = submission.update is not None and submission.update.status.final
        self._change(
            job,
            submit_state="sent",
            remote_id=submission.remote_id,
            raw=scrub(submission.raw),
            started_at=job.started_at or (sent_at if answered else None),
        )
        if submission.update is not None:
            await self._apply_update(job, provider, submission.update)
        return job.status.final

    async def _poll_until_final(self, job: Job, provider: Provider, deadline: float) -> None:
        first, longest = provider.poll_interval
        scale = self._time_scale(provider)
        interval = first
        batcher = self._batcher(provider)
        misses = 0  # polls in a row whose retries ran out
        outage = Outage(logger, f"{provider.name}: polling job {job.id}")
        while not job.status.final:
            if time.time() >= deadline:
                await self._time_out(job, provider)
                return
            before = (job.status, job.progress)
            try:
                update = await batcher.poll(job, deadline)
            except (RateLimited, ServiceUnavailable) as exc:
                # The provider may well still be running it: keep asking until the deadline.
                delay = min(self.backoff_cap, self.retry_policy.delay(misses) + interval * scale)
                misses += 1
                outage.failed(f"failed ({exc})", f"polling again in {delay:.1f} s, backing off "
                              "until its deadline")
                await asyncio.sleep(max(0.0, min(delay, deadline - time.time())))
                continue
            misses = 0
            outage.worked("answers again")
            if job.id in self._cancelled:
                return
            await self._apply_update(job, provider, update)
            if job.status.final:
                return
            moved = (job.status, job.progress) != before
            interval = next_interval(interval, first, longest, moved=moved)
            delay = jittered(interval * scale)
            await asyncio.sleep(max(0.0, min(delay, deadline - time.time())))

    async def _time_out(self, job: Job, provider: Provider) -> None:
        timeout = job.timeout or provider.default_timeout
        try:
            await provider.cancel(job)
        except ImagineError:
            pass
        self._fail(
            job,
            f"no result from {provider.label} within its deadline of {timeout:g} s "
            f"(last status {job.status.value}, {job.progress:.0f}%); "
            "start it again with a longer timeout=",
            JobTimeout.__name__,
        )

    async def _apply_update(self, job: Job, provider: Provider, update: Update) -> None:
        changes: dict[str, Any] = {"raw": scrub(update.raw)} if update.raw else {}
        if update.progress is not None:
            changes["progress"] = float(update.progress)
        for name in ("queue_position", "preview_url"):
            value = getattr(update, name)
            if value is not None or name == "queue_position":
                changes[name] = value
        if update.extras:
            changes["extras"] = {**job.extras, **scrub(update.extras)}
        status = update.status
        if status is not Status.QUEUED and job.started_at is None:
            changes["started_at"] = utcnow()
        if status is Status.SUCCEEDED:
            images, grid, error = await self._download(job, provider, update)
            changes.update(images=images, grid=grid, progress=100.0, completed_at=utcnow())
            changes["queue_position"] = None
            if error:
                changes["error"] = error
            changes["actions"] = provider.actions(job.updated({**changes, "status": status}))
        elif status is Status.FAILED:
            changes.update(
                error=update.error or f"{provider.label} reported the job as failed",
                error_type=update.error_type or "JobFailed",
                completed_at=utcnow(),
            )
        elif status is Status.CANCELLED:
            changes["completed_at"] = utcnow()
        changes["status"] = status
        self._change(job, **changes)

    async def _download(
        self, job: Job, provider: Provider, update: Update
    ) -> tuple[list[Image], Image | None, str | None]:
        """Download every image once into the cache; returns images, grid, error note. An image
        that could not be fetched comes back with ``missing`` saying why; unless it expired,
        :meth:`_refetch` tries it again in the background (see :mod:`._downloads`). The note is
        the missing images' if any, else the provider's own (``update.error``: a success that
        came without the image it promised)."""
        wanted = list(update.images or []) + ([update.grid] if update.grid else [])
        done = await self._fetch_all(job, provider, wanted)
        grid = done.pop() if update.grid else None
        return done, grid, _missing_error([*done, *([grid] if grid else [])]) or update.error

    async def _fetch_all(self, job: Job, provider: Provider, images: list[Image]) -> list[Image]:
        """``images`` each fetched into the cache or marked missing
        (:func:`_downloads.fetch_many`); each URL retried for at most ``min(retry_for, 30 s)``
        here, the rest in the background."""
        text = png_text(job)
        policy = dataclasses.replace(self.retry_policy, retry_for=min(self.retry_for, 30.0))

        async def download(url: str) -> bytes:
            return await policy.run(
                lambda: provider.download(url), name=provider.name, idempotent=True
            )

        def put(data: bytes) -> Path:
            return self.store.put_image(data, text=text)

        return await fetch_many(images, download, put)

    # ================================================================ missing images
    def _watch_images(self, job: Job, changed: frozenset[str] = frozenset({"images"})) -> None:
        """Tag ``job``'s images with this engine (so ``Image.path``/``open()`` can ask for a
        missing one again) and retry the missing ones of a succeeded job in the background."""
        if not {"images", "grid", "status"} & changed:
            return
        images = [*job.images, *([job.grid] if job.grid else [])]
        for image in images:
            image.__dict__["_host"] = self  # not a field: never stored, compared or shown
            image.__dict__["_job_id"] = job.id
        if job.status is not Status.SUCCEEDED or not any(i.retrying for i in images):
            return
        with self._lock:
            if job.id in self._refetching or self._loop is None:
                return
            self._refetching[job.id] = None
        self.run(self._refetch(job))

    async def _refetch(self, job: Job) -> None:
        """Retry ``job``'s missing images with capped exponential back-off (from
        ``backoff_base`` up to 10 × ``backoff_cap``) until each is fetched or expired; a
        :meth:`nudge_image` starts the next round at once."""
        wake = asyncio.Event()
        with self._lock:
            self._refetching[job.id] = wake
        try:
            attempt = 0
            while any(i.retrying for i in [*job.images, *([job.grid] if job.grid else [])]):
                delay = retry_delay(attempt, self.backoff_base, self.backoff_cap * 10)
                try:
                    await asyncio.wait_for(wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                wake.clear()
                await self._refetch_once(job)
                attempt += 1
        finally:
            with self._lock:
                self._refetching.pop(job.id, None)

    async def _refetch_once(self, job: Job) -> None:
        """One round: fetch every retrying image of ``job`` and store what changed (the job
        stays ``succeeded``)."""
        provider = self.provider(job.provider, prepare=False)
        retry = [i for i in [*job.images, *([job.grid] if job.grid else [])] if i.retrying]
        fetched = {_image_key(i): i for i in await self._fetch_all(job, provider, retry)}

        def merged(image: Image) -> Image:  # onto the job as it is now: another round may
            new = fetched.get(_image_key(image))  # have fetched it meanwhile
            return new if new is not None and image.retrying else image

        done = [merged(image) for image in job.images]
        new_grid = merged(job.grid) if job.grid else None
        changes: JobChanges = {"images": done, "grid": new_grid}
        if (job.error or "").startswith(_MISSING_ERROR) or job.error is None:
            changes["error"] = _missing_error([*done, *([new_grid] if new_grid else [])])
        self._change(job, **changes)

    def fetch_image(self, image: Image) -> Image | None:
        """``image`` fetched again now, waiting up to ``2 × http_timeout`` (``Image.open()``
        calls this for a missing image); ``None`` on the engine thread or for an unknown job."""
        job = self._jobs.get(image.__dict__.get("_job_id", ""))
        if job is None or self._loop is None or threading.current_thread() is self._thread:
            return None
        try:
            self.run(self._refetch_once(job)).result(self.http_timeout * 2)
        except (ImagineError, concurrent.futures.TimeoutError) as exc:
            logger.info("could not fetch %s now: %s", image.url, exc)
        for now in [*job.images, *([job.grid] if job.grid else [])]:
            if _image_key(now) == _image_key(image):
                return now
        return None

    def nudge_image(self, image: Image) -> None:
        """Start the next retry round of ``image``'s job now, in the background (reading
        ``Image.path`` of a missing image calls this; it never blocks)."""
        loop = self._loop
        if threading.current_thread() is self._thread:
            return  # the engine itself reading a field (comparing, storing) is no request
        with self._lock:
            wake = self._refetching.get(image.__dict__.get("_job_id", ""))
        if wake is not None and loop is not None:
            loop.call_soon_threadsafe(wake.set)

    def _resume_downloads(self) -> None:
        """Retry, in the background, the missing images of the succeeded jobs in the store."""
        for record in self.store.missing_images():
            with self._lock:
                if record["id"] in self._jobs:
                    continue
            self._attach(Job.from_record(record))

    async def _cancel(self, job: Job) -> None:
        with self._lock:
            task = self._tasks.get(job.id)
        if task is not None:
            task.cancel()
        try:
            provider: Provider | None = self.provider(job.provider, prepare=False)
        except ImagineError:
            provider = None
        if provider is not None and job.remote_id:
            try:
                await self.retry(lambda: provider.cancel(job), provider, idempotent=True)
            except ImagineError as exc:
                logger.warning("could not cancel %s at %s: %s", job.id, provider.label, exc)
        for _ in range(3):  # a followed job's row may move meanwhile: up to date, try again
            if job.status.final:
                return
            with contextlib.suppress(_Superseded):
                self._change(job, status=Status.CANCELLED, completed_at=utcnow())

    # ================================================================ remote history
    async def adopt(
        self,
        provider: str,
        remote: RemoteJob,
        *,
        parent_id: str | None = None,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
        download: bool = True,
    ) -> tuple[Job, bool]:
        """Keep a job found on the provider's side as a local job, once (on the engine loop).

        Matched by ``(provider, remote.remote_id)``. A job already stored is brought up to
        date: a non-final one takes the remote state (images downloaded as usual) and a missing
        ``parent_id`` is filled in. Otherwise a new job is stored with the remote's kind, prompt,
        parameters, status and timestamps (``completed_at``/``started_at`` as given, default
        ``None``: unknown) and, when it succeeded and ``download`` is true (default), its images
        downloaded into the cache; a new job that is not final yet is watched like any other.
        Returns ``(job, created)``.
        """
        instance = self.provider(provider, prepare=False)
        update = remote.update
        found = self.store.find_remote(instance.name, str(remote.remote_id))
        if found is not None:
            job = self.get(found["id"])
            if parent_id and not job.parent_id and parent_id != job.id:
                with contextlib.suppress(_Superseded):
                    self._change(job, parent_id=parent_id)
            following = job.id in self._following  # its owner polls it
            if not following and not job.status.final and (update.status, update.progress) != (
                job.status, job.progress
            ):
                await self._apply_update(job, instance, update)
            return job, False
        fetch = update.status is Status.SUCCEEDED and download
        job = self._remote_job(instance, remote, parent_id, started_at, completed_at,
                               final=not fetch)
        self._insert(job)  # claims (provider, remote_id) before any await
        self._attach(job)
        if fetch:
            images, grid, error = await self._download(job, instance, update)
            changes: dict[str, Any] = dict(
                status=Status.SUCCEEDED, progress=100.0, images=images, grid=grid,
                queue_position=None, completed_at=completed_at,
            )
            if error:
                changes["error"] = error
            changes["actions"] = instance.actions(job.updated(changes))
            self._change(job, **changes)
        elif not update.status.final:
            self._schedule(job)
        return job, True

    def adopt_many(
        self,
        provider: str,
        remotes: Sequence[tuple[RemoteJob, str | None, datetime | None, datetime | None]],
    ) -> list[RemoteJob]:
        """Store, in one transaction, the final remote jobs of ``remotes`` that are not stored
        yet and need no download: ``(remote, parent_id, started_at, completed_at)`` each.

        What a page of a remote listing mostly is (failed jobs, and succeeded ones when the
        pull does not download). Returns the remote jobs it left for :meth:`adopt` (already
        stored, not final, or repeated), in their order. Thread-safe (it only reads the provider
        class and writes the store), so a pull runs it off the loop.
        """
        instance = self.provider(provider, prepare=False)
        known = self.store.find_remotes(instance.name, [str(r.remote_id) for r, *_ in remotes])
        new: list[Job] = []
        rest: list[RemoteJob] = []
        seen: set[str] = set()
        for remote, parent_id, started_at, completed_at in remotes:
            key = str(remote.remote_id)
            if key in known or key in seen or not remote.update.status.final:
                rest.append(remote)
                continue
            seen.add(key)
            new.append(self._remote_job(instance, remote, parent_id, started_at, completed_at,
                                        final=True))
        if new:
            try:
                self.store._bulk_save([job.to_record() for job in new])
            except ImagineError:  # one of them was stored meanwhile: let adopt sort them out
                return [remote for remote, *_ in remotes]
        return rest

    def _remote_job(
        self,
        instance: Provider,
        remote: RemoteJob,
        parent_id: str | None,
        started_at: datetime | None,
        completed_at: datetime | None,
        *,
        final: bool,
    ) -> Job:
        """The local :class:`Job` for a remote one. ``final=False`` for a succeeded job whose
        images are still to be downloaded: it is stored as running until they are."""
        update = remote.update
        status = update.status
        done = status.final
        job = Job(
            provider=instance.name,
            kind=remote.kind or "imagine",
            prompt=remote.prompt or "",
            params=scrub(dict(remote.params or {})),
            remote_id=str(remote.remote_id),
            parent_id=parent_id,
            status=status if final or status is not Status.SUCCEEDED else Status.RUNNING,
            progress=100.0 if status is Status.SUCCEEDED and final else float(
                update.progress or 0.0),
            queue_position=None if done else update.queue_position,
            preview_url=update.preview_url,
            images=list(update.images or []) if final else [],
            grid=update.grid if final else None,
            error=update.error,
            error_type=update.error_type or ("JobFailed" if status is Status.FAILED else None),
            extras={**scrub(update.extras), "adopted": True},
            sandbox=instance.sandbox,
            submit_state="sent",
            timeout=type(instance).default_timeout,
            created_at=remote.created_at or utcnow(),
            started_at=started_at if done else None,  # a live job's deadline counts from now
            completed_at=completed_at if done and final else None,
            raw=scrub(update.raw),
        )
        if final and status is Status.SUCCEEDED:
            job.actions = instance.actions(job)
        return job

    # ================================================================ plumbing
    def provider(self, name: str, *, prepare: bool = True) -> Provider:
        """The configured instance of provider ``name`` (its key, base URL and HTTP client from
        the environment; one per provider and base URL, cached).

        With ``prepare`` (default ``True``) its :meth:`~Provider.prepare` has run once, so
        :meth:`~Provider.validate` sees the provider's catalogue; a failure to prepare is logged,
        not raised (the provider checks again before it submits). Preparing blocks on the loop,
        so calls made on the engine thread pass ``prepare=False``.

        Raises:
            ConfigurationError: unknown provider, or one forced out of the sandbox with no key.
        """
        cls = provider_class(name)
        settings = cls.env_settings()
        key = f"{cls.name}|{settings.base_url}"
        with self._lock:
            instance = self._providers.get(key)
            if instance is None:
                kwargs: dict[str, Any] = {}
                if settings.extra:
                    kwargs["extra"] = dict(settings.extra)
                instance = self._providers[key] = cls(
                    client=self._client(settings.in_process),
                    base_url=settings.base_url,
                    api_key=settings.api_key,
                    sandbox=settings.sandbox,
                    **kwargs,
                )
                self.store.fingerprint(cls.name, _credentials(settings, self.store.home))
            self._providers[cls.name] = instance
        if prepare:
            self._prepare(instance)
        return instance

    def _prepare(self, instance: Provider) -> None:
        """Run ``instance.prepare()`` once (see :meth:`provider`)."""
        if id(instance) in self._prepared:
            return
        try:
            self.run(
                self.retry(instance.prepare, instance, idempotent=True)
            ).result(self.http_timeout * 2)
        except (ImagineError, concurrent.futures.TimeoutError) as exc:
            logger.warning("%s: could not load its catalogue before validating: %s",
                           instance.label, exc)
            return
        self._prepared.add(id(instance))

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the engine loop (starting the engine if needed); its result or
        error lands in the returned future. Call from any thread but the engine's own."""
        if self._loop is None:
            self.start()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The back-off of every request (from ``backoff_base``, ``backoff_cap``, ``retry_for``,
        ``max_retries``)."""
        return RetryPolicy(self.backoff_base, self.backoff_cap, self.retry_for, self.max_retries)

    async def retry(
        self, call: Callable[[], Awaitable[T]], provider: Provider, *, idempotent: bool
    ) -> T:
        """Await ``call()`` with jittered exponential back-off on 5xx, 429 and network errors
        (on the engine loop). A non-idempotent call (a submit) is retried only on a 429 or when
        the request never reached the server. See :class:`~jupyter_imagine._polling.RetryPolicy`.
        """
        return await self.retry_policy.run(call, name=provider.name, idempotent=idempotent)

    def _client(self, in_process: bool) -> httpx.AsyncClient:
        kind = "asgi" if in_process else "net"
        client = self._clients.get(kind)
        if client is None:
            # Waiting for a free pooled connection is our own queue, not the service failing.
            timeout = httpx.Timeout(
                self.http_timeout, connect=min(10.0, self.http_timeout), pool=None
            )
            if in_process:
                client = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=self.sandbox_app()), timeout=timeout
                )
            else:
                client = httpx.AsyncClient(timeout=timeout,
                                           transport=pooled(self.max_connections))
            self._clients[kind] = client
        return client

    def sandbox_app(self) -> Any:
        """The in-process sandbox ASGI app this engine talks to (created on first use)."""
        with self._lock:
            if self._sandbox_app is None:
                from .sandbox import create_app

                self._sandbox_app = create_app(
                    speed=self.sandbox_speed, state_dir=self.store.home / "sandbox")
            return self._sandbox_app

    def _attach(self, job: Job) -> Job:
        job._host = self
        with self._lock:
            self._jobs[job.id] = job
        job.observe(self._watch_images)
        self._watch_images(job)
        return job

    def _launch(self, job: Job) -> Job:
        self.start()
        self._insert(job)  # persisted before anyone sees it
        self._attach(job)
        self._schedule(job)
        return job

    def _insert(self, job: Job) -> None:
        """Store the new ``job``, owned by this engine for one lease."""
        version = self.store.save(
            job.to_record(), owner=self.owner, lease_until=time.time() + self.lease_seconds
        )
        job.version = version or 0

    def _schedule(self, job: Job) -> None:
        future = self.run(self._drive(job))
        with self._lock:
            self._tasks[job.id] = future

    def _time_scale(self, provider: Provider) -> float:
        return 1.0 / self.sandbox_speed if provider.sandbox else 1.0

    def _batcher(self, provider: Provider) -> PollBatcher:
        batcher = self._batchers.get(provider.name)
        if batcher is None:
            window = min(0.05, provider.poll_interval[0] * self._time_scale(provider) / 10)
            batcher = self._batchers[provider.name] = PollBatcher(
                provider, window, self.retry_policy
            )
        return batcher

    def _semaphore(self, provider: Provider) -> asyncio.Semaphore:
        sem = self._semaphores.get(provider.name)
        if sem is None:
            limit = self.concurrency.get(provider.name, type(provider).max_concurrency)
            sem = self._semaphores[provider.name] = asyncio.Semaphore(max(1, int(limit)))
        return sem

    # ================================================================ state changes
    def _change(self, job: Job, **changes: Unpack[JobChanges]) -> None:
        """Store ``changes`` first (a compare-and-set on the job's version), then apply them
        to the job (which wakes observers).

        Raises:
            _Superseded: the row is final, or another engine holds it now; the job was brought
                up to date from the store (and follows it), so the caller stops driving it.
            StorageError: the store cannot be written; the job is failed in memory with that
                message (nothing was half-written: one transaction).
        """
        for _ in range(3):
            fresh: JobChanges = {
                k: v for k, v in changes.items() if getattr(job, k) != v  # type: ignore[misc]
            }
            if not fresh:
                return
            fresh["updated_at"] = utcnow()
            target = job.updated(fresh)
            if job.status.final and target.status is not job.status:
                raise _Superseded(job.id)  # a final state is never left, in memory either
            try:
                version = self.store.transition(job.id, job.version, target.to_record())
            except StorageError as exc:
                self._abandon(job, exc)
                raise
            if version is not None:
                job.version = version
                job._apply(fresh)
                return
            self._refused(job, keeps_status="status" not in fresh)
        raise _Superseded(job.id)

    def _refused(self, job: Job, *, keeps_status: bool) -> None:
        """A transition of ``job`` was refused: bring it up to date from the store. A change
        that keeps the status (late images of a finished job) is tried again on the fresh row,
        as :meth:`Store.transition` allows; otherwise, unless the row is still this engine's and
        not final, stop driving it (:class:`_Superseded`)."""
        record = self.store.current(job.id)
        if record is None:
            logger.warning("job %s is no longer in the history; it is not driven further", job.id)
            raise _Superseded(job.id)
        self._sync(job, record)
        if job.status.final:
            if keeps_status:
                return
            raise _Superseded(job.id)
        if record["owner"] != self.owner:
            logger.info("job %s is held by %s now; following it", job.id, record["owner"])
            self._follow(job)
            raise _Superseded(job.id)

    def _abandon(self, job: Job, error: StorageError) -> None:
        """The store cannot take ``job``'s next state: fail it in memory (``wait()`` raises
        the StorageError); the heartbeat settles it once the store answers (:meth:`_take_back`)."""
        logger.error("job %s: %s", job.id, error)
        if not job.status.final:
            now = utcnow()
            message = error.message
            if job.submit_state == "sent":
                message += (f"; the job goes on at {job.provider}, and this kernel takes it up "
                            "again once the history can be written: "
                            f"jupyter_imagine.job({job.id!r})")
            elif job.submit_state == "pending":
                message += (f"; nothing was sent to {job.provider}: run it again once the "
                            "history can be written")
            job._apply({"status": Status.FAILED, "error": message,
                        "error_type": StorageError.__name__, "completed_at": now,
                        "updated_at": now})
        with self._lock:
            self._abandoned.add(job.id)

    def annotate(self, job: Job, **extras: Any) -> None:
        """Merge ``extras`` into ``job.extras`` (stored first). Call on the engine thread."""
        self._change(job, extras={**job.extras, **scrub(extras)})

    def _fail(self, job: Job, error: BaseException | str, error_type: str | None = None) -> None:
        message = redact(str(error))
        kind = error_type or (type(error).__name__ if isinstance(error, BaseException) else None)
        self._change(
            job,
            status=Status.FAILED,
            error=message,
            error_type=kind,
            completed_at=utcnow(),
        )
        logger.info("%s job %s failed: %s", job.provider, job.id, message)
