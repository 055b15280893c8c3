"""The model every provider maps onto: :class:`Job`, :class:`Image`, :class:`Status` and the
action labels.

A :class:`Job` is a plain record plus a few methods. The engine owns its life: it creates the
job, writes every change to the store first and only then applies it here
(:meth:`Job._apply`), which also wakes observers (widgets) and waiters. Methods that start work
(``act``, ``cancel``) hand over to the engine the job is attached to, so this module imports
nothing above it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict

from .errors import (
    ActionNotAvailable,
    ConfigurationError,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobTimeout,
    StorageError,
    error_class,
)

if TYPE_CHECKING:  # pragma: no cover
    import PIL.Image

__all__ = [
    "ACTION_LABELS",
    "GRID_ACTIONS",
    "REROLL",
    "VARY_REGION",
    "Balance",
    "Cost",
    "Image",
    "ImageHost",
    "Job",
    "JobChanges",
    "Status",
    "WaitInterrupted",
    "check_timeout",
]


class Status(str, Enum):
    """The five states of every job, whatever the provider calls them."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """``True`` for succeeded, failed and cancelled."""
        return self in _FINAL

    def __str__(self) -> str:
        return self.value


_FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

# Action labels are the Midjourney button texts wherever a provider has them.
REROLL = "🔄"
VARY_REGION = "Vary (Region)"
UPSCALES = ("U1", "U2", "U3", "U4")
VARIATIONS = ("V1", "V2", "V3", "V4")
#: What a finished 2×2 grid offers, in Midjourney's button order.
GRID_ACTIONS: tuple[str, ...] = (*UPSCALES, REROLL, *VARIATIONS)
#: Labels offered on a Midjourney upscale (the full set lands with the Midjourney issue).
UPSCALE_ACTIONS: tuple[str, ...] = (
    "Vary (Strong)",
    "Vary (Subtle)",
    VARY_REGION,
    "Upscale (Subtle)",
    "Upscale (Creative)",
    "Upscale (2x)",
    "Upscale (4x)",
    "Zoom Out 2x",
    "Zoom Out 1.5x",
    "⬅️",
    "➡️",
    "⬆️",
    "⬇️",
)
#: Every Midjourney label; other providers add their own (Remix, Export, Edit, Upscale …).
ACTION_LABELS: tuple[str, ...] = (*GRID_ACTIONS, *UPSCALE_ACTIONS)


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(timezone.utc)


def check_timeout(timeout: Any) -> float | None:
    """``timeout`` as seconds if it is ``None`` or a positive finite number (the magic's
    ``-t/--timeout`` check, with the same words).

    Raises:
        ConfigurationError: ``nan``, ``inf``, zero, a negative number, a bool or a non-number.
    """
    if timeout is None:
        return None
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not number or not (math.isfinite(timeout) and timeout > 0):
        raise ConfigurationError(
            f"timeout must be a positive number of seconds, not {timeout!r}"
        )
    return float(timeout)


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


#: Where a :class:`Cost` figure comes from.
COST_SOURCES = ("provider", "prices")


@dataclass(frozen=True)
class Cost:
    """What one job cost (or will cost), in the unit its provider counts.

    Attributes:
        amount: how much, in ``unit`` (finite, not negative).
        unit: as the provider counts: ``"credits"`` (APIFRAME, Blockade), ``"fast_seconds"``
            (TheNextLeg), ``"images"`` (neuroflash quota units), ``"requests"`` (Banatie).
        source: ``"provider"`` (the payload or a balance change stated it) or ``"prices"``
            (the published price table, or the user's override).
        usd: one comparable figure where a conversion is published, else ``None`` (default).

    Raises:
        InvalidRequest: a negative or non-finite amount, an empty unit or an unknown source.
    """

    amount: float
    unit: str
    source: str
    usd: float | None = None

    def __post_init__(self) -> None:
        amount = self.amount
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
            math.isfinite(amount) and amount >= 0
        ):
            raise InvalidRequest(f"a cost must be a finite amount >= 0, not {amount!r}")
        if not isinstance(self.unit, str) or not self.unit:
            raise InvalidRequest(f"a cost needs a unit such as 'credits', not {self.unit!r}")
        if self.source not in COST_SOURCES:
            raise InvalidRequest(
                f"a cost's source must be one of {', '.join(COST_SOURCES)}, not {self.source!r}"
            )
        object.__setattr__(self, "amount", float(amount))


@dataclass(frozen=True)
class Balance:
    """What a provider reports as left, when it was read.

    Attributes:
        provider: the provider's name (``apiframe``).
        amounts: unit → amount left, e.g. ``{"credits": 812.0}``; TheNextLeg
            ``{"fast_seconds": 11520.0}``; neuroflash ``{"images": 40, "images_today": 10}``;
            Banatie ``{"requests": 97}``.
        read_at: when it was read (tz-aware UTC; a naive time is taken as UTC).
        plan: the plan's name where the provider says it (default ``None``).
        limits: unit → the limit the amounts count down from (neuroflash's daily limit,
            Banatie's requests per window; default none).
        resets_at: when the amounts refill, where the provider says it (default ``None``).
    """

    provider: str
    amounts: dict[str, float]
    read_at: datetime
    plan: str | None = None
    limits: dict[str, float] = field(default_factory=dict)
    resets_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_at", _dt(self.read_at))
        object.__setattr__(self, "resets_at", _dt(self.resets_at))
        object.__setattr__(self, "amounts", {k: float(v) for k, v in self.amounts.items()})
        object.__setattr__(self, "limits", {k: float(v) for k, v in self.limits.items()})


@dataclass(frozen=True)
class Image:
    """One image of a job.

    Attributes:
        url: where the provider serves it (may expire), or ``None``.
        path: the local file in the image cache once downloaded, else ``None``. Reading it while
            the image is missing asks the engine to try the download again now (in the
            background; the value read is the current one).
        width, height: pixel size once known, else ``None``.
        role: ``"image"`` (default), ``"grid"``, ``"thumbnail"`` or ``"depth"``.
        index: 1–4 for the images of a grid, else ``None``.
        missing: why a result image is not in the cache (``"download failed: …, retrying"``,
            ``"expired: …"``), else ``None`` (default).
    """

    url: str | None = None
    path: str | None = None
    width: int | None = None
    height: int | None = None
    role: str = "image"
    index: int | None = None
    missing: str | None = None

    @property
    def retrying(self) -> bool:
        """``True`` while the image is missing and its download is still being retried."""
        note = self.__dict__.get("missing")
        return bool(note) and not str(note).startswith("expired")

    def open(self) -> PIL.Image.Image:
        """The image as a Pillow image (needs :attr:`path`; a missing image is downloaded
        again first, waiting up to the engine's HTTP timeout)."""
        from PIL import Image as PILImage

        return PILImage.open(self._local_path())

    def read_bytes(self) -> bytes:
        """The image file's bytes (needs :attr:`path`; a missing image is fetched first, as
        in :meth:`open`)."""
        with open(self._local_path(), "rb") as fh:
            return fh.read()

    def _local_path(self) -> str:
        path = self.__dict__.get("path")
        host: ImageHost | None = self.__dict__.get("_host")
        if not path and host is not None and self.retrying:
            fetched = host.fetch_image(self)
            path = fetched.__dict__.get("path") if fetched is not None else None
        if not path:
            why = f" ({self.missing})" if self.missing else ""
            raise InvalidRequest(
                f"this image is not downloaded{why}; wait for the job to finish"
            )
        return path

    def _repr_png_(self) -> bytes | None:
        path = self.__dict__.get("path")
        if not path or not path.endswith(".png"):
            return None
        return self.read_bytes()

    def to_dict(self) -> dict[str, Any]:
        return {name: self.__dict__.get(name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Image:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


def _image_path(self: Image) -> str | None:
    path: str | None = self.__dict__.get("path")
    host: ImageHost | None = self.__dict__.get("_host")
    if not path and host is not None and self.retrying:
        host.nudge_image(self)  # never blocks: the engine retries now, in the background
    return path


def _set_image_path(self: Image, value: str | None) -> None:
    self.__dict__["path"] = value  # only dataclass __init__ gets here: the class is frozen


# ``path`` stays a dataclass field (constructor, replace, fields) read through a property, so
# that reading it can ask for a missing image again.
Image.path = property(_image_path, _set_image_path)  # type: ignore[assignment,method-assign]


class ImageHost(Protocol):
    """What an :class:`Image` needs from the engine that keeps it (set as ``image._host``)."""

    def fetch_image(self, image: Image) -> Image | None: ...

    def nudge_image(self, image: Image) -> None: ...


class JobHost(Protocol):
    """What a :class:`Job` needs from the engine that runs it."""

    def act(self, job: Job, label: str, **kwargs: Any) -> Job: ...

    def rerun(self, job: Job, prompt: str | None = None, **params: Any) -> Job: ...

    def cancel(self, job: Job) -> None: ...

    def get(self, job_id: str) -> Job: ...


Observer = Callable[["Job", frozenset[str]], None]

#: Record fields, in the order the store keeps them.
RECORD_FIELDS = (
    "id",
    "provider",
    "kind",
    "prompt",
    "params",
    "parent_id",
    "remote_id",
    "action",
    "status",
    "progress",
    "queue_position",
    "preview_url",
    "images",
    "grid",
    "actions",
    "error",
    "error_type",
    "extras",
    "sandbox",
    "batch_id",
    "batch_row",
    "submit_state",
    "timeout",
    "created_at",
    "started_at",
    "completed_at",
    "updated_at",
    "raw",
)


class JobChanges(TypedDict, total=False):
    """A change to a :class:`Job`'s fields, as the engine stores and applies it
    (:meth:`Job.updated`, :meth:`Job._apply`). Every key is optional; the types are the fields'."""

    remote_id: str | None
    parent_id: str | None
    status: Status
    progress: float
    queue_position: int | None
    preview_url: str | None
    images: list[Image]
    grid: Image | None
    actions: tuple[str, ...]
    error: str | None
    error_type: str | None
    extras: dict[str, Any]
    submit_state: str
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    raw: dict[str, Any]


class WaitInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Job.wait`: the wait stopped, the job keeps running.

    A ``KeyboardInterrupt`` (scripts stop, ``except KeyboardInterrupt`` catches it) whose
    message is the one line to show, with the call that follows the job again; ``.job`` is
    the job (``None`` when ``message`` tells of something else, such as a batch).
    ``%load_ext jupyter_imagine`` shows it as that line alone, without a traceback.
    """

    def __init__(self, job: Job | None, message: str | None = None) -> None:
        if message is None and job is not None:
            short = job.id[:8]
            message = f"stopped waiting; job {short} keeps running — ji.job({short!r}) to follow it"
        super().__init__(message or "stopped waiting")
        self.job = job

    def __str__(self) -> str:
        return str(self.args[0])


class _WaitDisplay:
    """The progress line of one :meth:`Job.wait`: status, percent and time waited, live."""

    def __init__(self, job: Job) -> None:
        from ._display import Progress

        self.job = job
        self.progress = Progress(
            f"{job.provider} {job.kind} {job.id[:8]}", 100, unit="%", only_on_terminal=True
        )
        self.progress.update(job.progress, status=job.status.value)
        self.stop = job.observe(self.changed) if self.progress.shown else None

    #: Seconds between two redraws while nothing changes (the time waited moves on).
    TICK = 1.0

    def block(self, timeout: float | None) -> None:
        """Block until the job is final, redrawing every :attr:`TICK` seconds; after
        ``timeout`` seconds (default ``None``: no limit) ``concurrent.futures.TimeoutError``."""
        if not self.progress.shown:
            self.job._done.result(timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                self.job._done.result(self.TICK if left is None else max(0.0, min(self.TICK, left)))
                return
            except concurrent.futures.TimeoutError:
                if left is not None and left <= self.TICK:
                    raise
                self.changed(self.job)

    def changed(self, job: Job, fields: frozenset[str] = frozenset()) -> None:
        self.progress.update(100 if job.status is Status.SUCCEEDED else job.progress,
                             status=job.status.value)

    def close(self, status: str | None = None) -> None:
        if self.stop is not None:
            self.stop()
        self.changed(self.job)
        self.progress.close(status)


@dataclass(eq=False, repr=False)
class Job:
    """One request to a provider and everything it produced.

    Created by :func:`jupyter_imagine.imagine` (or an action on another job), never by hand.

    Attributes:
        id: the local id (a UUID); ``remote_id`` is the provider's own id once submitted.
        provider: ``apiframe``, ``thenextleg``, ``blockade``, ``neuroflash`` or ``banatie``.
        kind: imagine, reroll, upscale, variation, vary_region … (see DESIGN.md).
        prompt: the prompt exactly as sent.
        params: the provider parameters given; a secret one (``ParamSpec.secret``, e.g. a
            webhook secret) shows ``"***"``, its value lives only in memory.
        parent_id: the local id of the job this one was started from, else ``None``.
        action: the label that started it from its parent (``"U2"``, ``"🔄"`` …), else ``None``.
        status: a :class:`Status`; ``progress`` is 0–100.
        images: the result images; ``grid`` the composite grid where the provider returns one.
        actions: the labels this job offers now (empty until it succeeded).
        error: one readable line when it failed, in the provider's words where it gave any.
        sandbox: ``True`` when the job ran against the built-in sandbox.
        batch_id, batch_row: the :func:`jupyter_imagine.batch` and its row that started the job
            (stored with the job's first save), else ``None``.
        raw: the last provider payload, secrets stripped.
        timeout: the job's deadline in seconds from submission.
        version: the version of the job's stored row this job reflects (0 until stored): the
            engine's compare-and-set token; not part of :meth:`to_record`.
    """

    provider: str
    kind: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    parent_id: str | None = None
    remote_id: str | None = None
    action: str | None = None
    status: Status = Status.QUEUED
    progress: float = 0.0
    queue_position: int | None = None
    preview_url: str | None = None
    images: list[Image] = field(default_factory=list)
    grid: Image | None = None
    actions: tuple[str, ...] = ()
    error: str | None = None
    error_type: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    sandbox: bool = False
    batch_id: str | None = None
    batch_row: int | None = None
    submit_state: str = "pending"
    timeout: float | None = None
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime = field(default_factory=utcnow)
    raw: dict[str, Any] = field(default_factory=dict)
    version: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.status = Status(self.status)
        self._lock = threading.RLock()
        self._done: concurrent.futures.Future[Job] = concurrent.futures.Future()
        self._observers: list[Observer] = []
        self._host: JobHost | None = None
        #: Live values of secret parameters (``params`` holds only a mask); never stored.
        self._secrets: dict[str, str] = {}
        if self.status.final:
            self._done.set_result(self)

    # ----------------------------------------------------------------- records
    def to_record(self) -> dict[str, Any]:
        """The job as a JSON-ready dict (what the store keeps)."""
        with self._lock:
            rec = {name: getattr(self, name) for name in RECORD_FIELDS}
        rec["status"] = self.status.value
        rec["images"] = [img.to_dict() for img in self.images]
        rec["grid"] = self.grid.to_dict() if self.grid else None
        rec["actions"] = list(self.actions)
        for name in ("created_at", "started_at", "completed_at", "updated_at"):
            rec[name] = _iso(rec[name])
        rec["missing_images"] = self.missing_images
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Job:
        """Rebuild a job from :meth:`to_record`'s output (plus the row's ``version`` if the
        store gave one, default 0)."""
        data = {k: rec[k] for k in RECORD_FIELDS if k in rec}
        data["version"] = int(rec.get("version") or 0)
        data["images"] = [Image.from_dict(d) for d in data.get("images") or []]
        data["grid"] = Image.from_dict(data["grid"]) if data.get("grid") else None
        data["actions"] = tuple(data.get("actions") or ())
        data["params"] = dict(data.get("params") or {})
        data["extras"] = dict(data.get("extras") or {})
        data["raw"] = dict(data.get("raw") or {})
        for name in ("created_at", "started_at", "completed_at", "updated_at"):
            if name in data:
                data[name] = _dt(data[name])
        if data.get("created_at") is None:
            data.pop("created_at", None)
        if data.get("updated_at") is None:
            data.pop("updated_at", None)
        return cls(**data)

    @property
    def missing_images(self) -> int:
        """How many of the job's images (grid included) are not in the cache: their
        ``missing`` says why (0 for a job whose every image was downloaded)."""
        images = [*self.images, *([self.grid] if self.grid else [])]
        return sum(1 for image in images if image.missing)

    def updated(self, changes: JobChanges) -> Job:
        """A detached copy of the job with ``changes`` applied: what it will be once they are
        stored (not attached to an engine, not observed; lists and dicts are shared)."""
        with self._lock:
            copy = dataclasses.replace(self, **changes)
        return copy

    def with_secrets(self) -> Job:
        """A detached copy whose ``params`` carry the live secret values instead of their
        masks: what a provider builds the request from. Never stored, shown or kept."""
        if not self._secrets:
            return self
        with self._lock:
            copy = dataclasses.replace(self, params={**self.params, **self._secrets})
        return copy

    def _apply(self, changes: JobChanges) -> None:
        """Apply ``changes`` (already stored), wake observers, and resolve waiters if final."""
        if not changes:
            return
        unknown = [name for name in changes if name not in RECORD_FIELDS]
        if unknown:
            raise AttributeError(f"Job has no field {unknown[0]!r}")
        with self._lock:
            for name, value in changes.items():
                if name != "status":
                    setattr(self, name, value)
            if "status" in changes:  # last, and as a Status: a thread that reads ``done`` or
                # ``status`` without the lock and sees the job final also sees its images
                self.status = Status(changes["status"])
            final = self.status.final
        if final and not self._done.done():
            self._done.set_result(self)
        for observer in list(self._observers):
            try:
                observer(self, frozenset(changes))
            except Exception:  # an observer must never break the engine
                from ._secrets import get_logger

                get_logger(__name__).exception("job observer failed")

    def observe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback(job, changed_field_names)`` after every change (on the engine thread);
        returns a function that unsubscribes."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    # ----------------------------------------------------------------- waiting
    @property
    def done(self) -> bool:
        """``True`` once the job is succeeded, failed or cancelled."""
        return self.status.final

    @property
    def future(self) -> concurrent.futures.Future[Job]:
        """A future that resolves to the job once it is final (whatever the outcome; it never
        raises): for ``concurrent.futures.wait`` over many jobs."""
        return self._done

    @property
    def parent(self) -> Job | None:
        """The job this one was started from (looked up through the engine), else ``None``."""
        if self.parent_id is None or self._host is None:
            return None
        return self._host.get(self.parent_id)

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job is final and return it.

        Args:
            timeout: seconds to wait (default ``None``: until the job's own deadline).

        While it blocks on a job that is not final yet, a progress line shows the job's status,
        percent and the time waited: in a notebook an HTML bar (left in the saved notebook as
        the outcome), on a terminal a ``tqdm`` line on stderr (nothing when stderr is not a
        terminal: scripts' logs stay clean).

        Raises:
            JobFailed: the job failed (``JobCancelled`` if it was cancelled).
            JobTimeout: the job's deadline passed, or ``timeout`` ran out (the job keeps running).
            ConfigurationError: ``timeout`` is not a positive finite number of seconds.
            WaitInterrupted: Ctrl-C (or the notebook's stop button) during the wait; a
                ``KeyboardInterrupt``, so a script still stops. The job keeps running.
        """
        timeout = check_timeout(timeout)
        display = None if self._done.done() else _WaitDisplay(self)
        try:
            if display is None:
                self._done.result(timeout)
            else:
                display.block(timeout)
        except concurrent.futures.TimeoutError:
            if display is not None:
                display.close(f"still {self.status.value}: stopped waiting")
            raise JobTimeout(
                f"job {self.id} is still {self.status.value} after waiting {timeout:g} s; "
                "it keeps running: wait again or call .cancel()",
                job=self,
                provider=self.provider,
            ) from None
        except KeyboardInterrupt:
            if display is not None:
                display.close("stopped waiting")
            raise WaitInterrupted(self) from None
        if display is not None:
            display.close()
        self._raise_for_status()
        return self

    def __await__(self) -> Generator[Any, None, Job]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> Job:
        await asyncio.shield(asyncio.wrap_future(self._done))
        self._raise_for_status()
        return self

    def _raise_for_status(self) -> None:
        if self.status is Status.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled", job=self, provider=self.provider)
        if self.status is Status.FAILED:
            cls = error_class(self.error_type)
            message = f"{self.provider} job {self.id} failed: {self.error or 'no reason given'}"
            if issubclass(cls, (JobFailed, JobTimeout)):
                raise cls(message, job=self, provider=self.provider)
            if cls is StorageError:  # the history could not be written: say so, typed
                raise StorageError(self.error or message, provider=self.provider)
            raise JobFailed(message, job=self, provider=self.provider) from cls(
                self.error or "failed", provider=self.provider
            )

    # ----------------------------------------------------------------- actions
    def _require_host(self) -> JobHost:
        if self._host is None:
            raise InvalidRequest(
                f"job {self.id} is not attached to an engine; load it with jupyter_imagine.job(id)"
            )
        return self._host

    def act(self, label: str, **kwargs: Any) -> Job:
        """Start the child job for the action ``label`` (one of :attr:`actions`) and return it.

        Raises:
            ActionNotAvailable: the job does not offer ``label`` now.
        """
        label = self.require_action(label)
        return self._require_host().act(self, label, **kwargs)

    def require_action(self, label: str) -> str:
        """The action of :attr:`actions` that ``label`` names now: itself, or the one it spells
        in another case or with spaces around (``"u1"`` → ``"U1"``).

        Raises:
            ActionNotAvailable: the job does not offer it; the message lists what it offers.
        """
        if label in self.actions:
            return label
        folded = str(label).strip().casefold()
        matches = [action for action in self.actions if action.casefold() == folded]
        if len(matches) == 1:
            return matches[0]
        offered = ", ".join(self.actions) or "none until it has succeeded"
        raise ActionNotAvailable(
            f"{self.kind} job {self.id} does not offer {label!r} (status {self.status.value}); "
            f"it offers: {offered}",
            provider=self.provider,
        )

    def upscale(self, index: int) -> Job:
        """Upscale image ``index`` (1–4) of a grid: the ``U<index>`` action."""
        return self.act(f"U{_index(index)}")

    def vary(self, index: int, **kwargs: Any) -> Job:
        """Variations of image ``index`` (1–4) of a grid: the ``V<index>`` action."""
        return self.act(f"V{_index(index)}", **kwargs)

    def reroll(self, prompt: str | None = None, **kwargs: Any) -> Job:
        """Run the job again, with ``prompt`` instead of the original if given: its 🔄 where
        it offers one (the Midjourney providers, once succeeded), else a new job of the same
        provider with its parameters (``kwargs`` override them), linked to it as its parent."""
        if REROLL in self.actions:
            return self.act(REROLL, prompt=prompt, **kwargs)
        return self._require_host().rerun(self, prompt, **kwargs)

    def vary_region(self, mask: Any = None, prompt: str | None = None, **kwargs: Any) -> Any:
        """Redraw the white part of ``mask`` (PIL image, numpy array, PNG bytes or a path).

        The mask must have this job's image size; ``prompt`` defaults to the job's prompt.
        Without a mask, in a notebook, it returns the mask drawer over the image instead: paint,
        Submit, and the drawer turns into the child's view (``drawer.child`` is the child job).
        """
        hook = type(self)._mask_drawer_hook
        if mask is None and hook is not None and VARY_REGION in self.actions:
            drawer = hook(self, prompt)
            if drawer is not None:
                return drawer
        return self.act(VARY_REGION, mask=mask, prompt=prompt, **kwargs)

    def cancel(self) -> None:
        """Cancel the job (at the provider where it supports it); no-op once final."""
        if not self.status.final:
            self._require_host().cancel(self)

    # ----------------------------------------------------------------- display
    def _summary(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 60 else self.prompt[:57] + "…"
        parts = [f"{self.provider} {self.kind} {self.id[:8]}", self.status.value]
        if self.status is Status.RUNNING:
            parts.append(f"{self.progress:.0f}%")
        if self.sandbox:
            parts.append("[sandbox]")
        text = " · ".join(parts) + f" · {prompt!r}"
        if self.error:
            text += f"\n  error: {self.error}"
        if self.actions:
            text += f"\n  actions: {' '.join(self.actions)}"
        return text

    def __repr__(self) -> str:
        prompt = self.prompt if len(self.prompt) <= 40 else self.prompt[:37] + "…"
        sandbox = " sandbox" if self.sandbox else ""
        return (
            f"<Job {self.id[:8]} {self.provider}{sandbox} {self.kind} "
            f"{self.status.value} {self.progress:.0f}% {prompt!r}>"
        )

    #: Replaced by the widgets layer to show the live view; returns a MIME bundle.
    _display_hook: ClassVar[Callable[[Job], dict[str, Any]] | None] = None
    #: Replaced by the widgets layer: the mask drawer for vary_region() without a mask, or None.
    _mask_drawer_hook: ClassVar[Callable[[Job, str | None], Any] | None] = None

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, Any]:
        hook = type(self)._display_hook
        if hook is not None:
            return hook(self)
        return self._static_bundle()

    def _static_bundle(self) -> dict[str, Any]:
        """text/plain plus a PNG thumbnail of the grid or first image once there is one."""
        bundle: dict[str, Any] = {"text/plain": self._summary()}
        png = self._thumbnail_png()
        if png is not None:
            bundle["image/png"] = png
        return bundle

    def _thumbnail_png(self, size: int = 512) -> bytes | None:
        image = self.grid or (self.images[0] if self.images else None)
        if image is None or not image.path:
            return None
        from .imaging import thumbnail_png

        try:
            return thumbnail_png(image.read_bytes(), size)
        except OSError:
            return None


def _index(index: int) -> int:
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 4:
        raise InvalidRequest(f"image index must be 1, 2, 3 or 4, not {index!r}")
    return index
