"""``jupyter_imagine.batch``: many prompts in, one frame out, resumable after a kernel restart.

How it survives a restart: every job a batch starts carries the batch's id and its row number
(``Job.batch_id``/``batch_row``, given to ``Engine.imagine``), so they are stored **in the same
transaction that first stores the job** (before anything is sent). Calling :func:`batch` again
with the same input — the batch id is a hash of the rows, or the ``name`` given — finds those
jobs, re-attaches them (unfinished ones resume polling, as after any restart) and submits only the
rows that have no job yet. So no row is ever submitted twice, whenever the kernel died.

Concurrency: ``max_concurrency`` bounds this batch's jobs in flight (submitted and not final),
on top of the engine's per-provider limit; the next row is submitted when one of them finishes.
The progress (:class:`~jupyter_imagine._display.Progress`: a bar in a notebook, a text bar on
stderr elsewhere) is updated from the engine thread as jobs change (live while the cell blocks).

Budgets (issue 14): with ``budget=`` the batch's own spend (spent + reserved by its jobs, over
every run of it; per provider and unit when rows name several providers) may not pass that
amount, and the session's budgets apply too (see
:mod:`jupyter_imagine._budgets`). The engine refuses a job that would pass one before sending
it (the job fails with :class:`~jupyter_imagine.errors.BudgetExceeded`); the batch then stops
submitting, lets what is in flight finish, and lists the rows left unsubmitted in
``df.attrs["unsubmitted"]``. A refused job was never sent, so calling :func:`batch` again (with
a larger budget, or once the period turned) replaces it with a new job: the run resumes there.
The same goes for a job the provider refused for want of credits (``QuotaExceeded`` before it
took the job on): the batch stops there, and resumes once the balance is topped up.
``dry_run=True`` submits nothing and returns the estimate of the rows still to submit.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._budgets import check_amount
from ._display import Progress
from ._secrets import get_logger
from .errors import BudgetExceeded, ImagineError, InvalidRequest, QuotaExceeded
from .models import Job, Status, WaitInterrupted

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["OUTPUT_COLUMNS", "batch"]

logger = get_logger(__name__)

#: Columns :func:`batch` adds (and ignores as parameters when a result is passed back in).
OUTPUT_COLUMNS = ("provider", "id", "status", "image_paths", "error")
#: How many rows' problems a validation error lists.
_SHOWN_PROBLEMS = 5


@dataclass
class _Row:
    number: int
    provider: str
    prompt: str
    params: dict[str, Any]


@dataclass
class _Tally:
    """Counts by status, kept up to date from the engine thread."""

    total: int
    states: dict[str, Status] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, jobs: Iterable[Job], total: int) -> tuple[_Tally, int]:
        """A tally of ``jobs`` (of ``total`` rows), and how many of them are final."""
        tally = cls(total=total)
        for job in list(jobs):
            tally.set(job)
        return tally, sum(1 for s in tally.states.values() if s.final)

    def set(self, job: Job) -> None:
        with self.lock:
            self.states[job.id] = job.status

    def counts(self) -> dict[Status, int]:
        with self.lock:
            states = list(self.states.values())
        return {s: states.count(s) for s in Status}

    def show(self, progress: Progress) -> None:
        """Move ``progress`` to the current counts: final jobs done, failed ones, in flight."""
        counts = self.counts()
        final = counts[Status.SUCCEEDED] + counts[Status.FAILED] + counts[Status.CANCELLED]
        running = counts[Status.QUEUED] + counts[Status.RUNNING]
        status = f"{running} in flight" if running else ""
        if counts[Status.CANCELLED]:
            status = ", ".join(p for p in (status, f"{counts[Status.CANCELLED]} cancelled") if p)
        progress.update(final, failed=counts[Status.FAILED], status=status)


def batch_label(count: int, name: str | None) -> str:
    """The progress label of a batch: ``"batch of 40 prompts"`` (and its name when given)."""
    label = f"batch of {count} prompt{'' if count == 1 else 's'}"
    return f"{label} ({name})" if name is not None else label


def _frame_of(data: Any, prompt: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data.copy()
    elif isinstance(data, pd.Series):
        frame = data.to_frame(name=prompt)
    elif isinstance(data, str):
        raise InvalidRequest("batch() takes many prompts: a DataFrame or a list, not one string")
    elif isinstance(data, Iterable):
        items = list(data)
        if not items:  # nothing to submit: the same empty result as an empty frame
            frame = pd.DataFrame({prompt: pd.Series([], dtype=object)})
        elif all(isinstance(item, Mapping) for item in items):
            frame = pd.DataFrame(items)
        elif all(isinstance(item, str) for item in items):
            frame = pd.DataFrame({prompt: items})
        else:
            raise InvalidRequest("batch() takes a DataFrame, a list of prompts or a list of dicts")
    else:
        raise InvalidRequest(
            f"batch() takes a DataFrame, a list of prompts or a list of dicts, not "
            f"{type(data).__name__}"
        )
    if prompt not in frame.columns:
        raise InvalidRequest(
            f"no prompt column {prompt!r}; the columns are: {', '.join(map(str, frame.columns))}"
            " (choose one with prompt=...)"
        )
    return frame


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()  # numpy scalars
        except (ValueError, AttributeError):
            return value
    return value


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _rows(frame: pd.DataFrame, prompt: str, provider: str, engine: Engine) -> list[_Row]:
    """Every row checked by its provider before anything is stored or sent."""
    from .providers import provider_class

    params_columns = [c for c in frame.columns if c != prompt and c not in OUTPUT_COLUMNS]
    per_row_provider = "provider" in frame.columns
    rows: list[_Row] = []
    problems: list[str] = []
    validators: dict[str, Any] = {}
    for number, record in enumerate(frame.to_dict("records")):
        try:
            text = record.get(prompt)
            if _missing(text) or not isinstance(text, str) or not text.strip():
                raise InvalidRequest("the prompt is empty")
            name = record.get("provider") if per_row_provider else None
            name = provider if _missing(name) or name is None else name
            cls = provider_class(str(name) if name is not None else provider)
            params = {
                str(k): _plain(record[k]) for k in params_columns if not _missing(record[k])
            }
            validate = validators.get(cls.name)
            if validate is None:
                # prepared: validation sees the provider's catalogue, as Engine.imagine does
                validate = validators[cls.name] = engine.provider(cls.name).validate
            validate("imagine", text, params)
            rows.append(_Row(number, cls.name, text.strip(), params))
        except ImagineError as exc:
            problems.append(f"row {number}: {exc}")
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        shown = "; ".join(problems[:_SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise InvalidRequest(f"nothing was submitted: {len(problems)} rows are invalid: {shown}")
    return rows


def batch_id_of(rows: Sequence[_Row]) -> str:
    """The batch id of ``rows`` when no name is given: a hash of providers, prompts, params."""
    payload = json.dumps(
        [[r.provider, r.prompt, r.params] for r in rows], sort_keys=True, default=str,
        ensure_ascii=False,
    )
    return "batch-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def batch(
    data: Any,
    prompt: str = "prompt",
    *,
    engine: Engine,
    provider: str,
    max_concurrency: int | None = None,
    name: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
    progress: bool = True,
    budget: float | None = None,
    dry_run: bool = False,
) -> Any:
    """Submit many prompts and return the input as a frame with their jobs filled in.

    Args:
        data: a DataFrame, a list of prompts, or a list of dicts (one per row).
        prompt: the column with the prompt (default ``"prompt"``). Every other column is a
            parameter of that row's job (``aspect_ratio``, ``seed`` …; NA cells are left out),
            except a ``provider`` column, which picks the provider per row, and the columns
            this function adds (:data:`OUTPUT_COLUMNS`), so a result can be passed back in.
        engine: the engine the jobs run on (``jupyter_imagine.batch`` passes the shared one).
        provider: the provider for rows without one.
        max_concurrency: this batch's jobs in flight at once (default ``None``: all rows; the
            engine's per-provider limits still apply).
        name: the batch's id (default ``None``: a hash of the rows, so the same input is the
            same batch). Give a new name to run the same prompts again as a new batch.
        wait: block until every job is final (default ``True``). With ``False`` the rows are
            submitted from a background thread and the frame is returned at once with what is
            known; call ``batch()`` again with the same input for the current state.
        timeout: each job's deadline in seconds (default: the provider's).
        progress: show the batch's progress (default ``True``): jobs done of all, rate, ETA,
            failures; in a notebook a bar, elsewhere a text bar on stderr.
        budget: the most this batch may cost, in the provider's unit (default ``None``); see
            the module docstring. ``dry_run=True``: submit nothing, return the
            :class:`~jupyter_imagine._spend.Estimate` of the rows left (default ``False``).

    Returns:
        A copy of the input (same index) with ``provider``, ``id``, ``status`` (categorical),
        ``image_paths`` and ``error`` filled in; ``df.attrs["batch_id"]`` is the batch's id,
        ``df.attrs["unsubmitted"]`` the rows not sent. ``df.imagine`` works on it.

    Raises:
        InvalidRequest: a missing prompt column, an empty prompt, an unknown provider or a
            parameter a provider does not take, in any row; nothing is submitted then.
        WaitInterrupted: Ctrl-C while waiting (a ``KeyboardInterrupt``): no more rows are
            submitted, the submitted jobs keep running; the same call again resumes.
    """
    _check_limit(max_concurrency)
    engine.start()
    frame = _frame_of(data, prompt)
    rows = _rows(frame, prompt, provider, engine)
    batch_id = str(name) if name is not None else batch_id_of(rows)
    if dry_run:
        return _dry_run(engine, batch_id, rows)
    driver, fresh = _driver_for(engine, batch_id, rows, max_concurrency or len(rows) or 1,
                                timeout, check_amount(budget))
    jobs = driver.jobs
    tally, before = _Tally.of(jobs.values(), len(rows))
    bar = Progress(batch_label(len(rows), name), len(rows), enabled=progress, initial=before)

    def changed(job: Job, fields: frozenset[str] = frozenset({"status"})) -> None:
        if "status" in fields:
            tally.set(job)
            tally.show(bar)

    unsubscribe = [job.observe(changed) for job in list(jobs.values())]
    driver.watchers.append(changed)
    tally.show(bar)
    try:
        _drive(driver, fresh, wait)
    finally:
        if wait:  # this call's display is final: stop updating it
            driver.unwatch(changed, unsubscribe)
            tally.show(bar)
            bar.close(_budget_note(rows, jobs))
        elif not bar.in_notebook:  # a text bar must not stay open under the prompt
            bar.close("submitting in the background")
    return _result(frame, rows, jobs, batch_id)


def _drive(driver: _Driver, fresh: bool, wait: bool) -> None:
    """Submit the rows (here, or from a thread when not waiting) and, when waiting, block until
    every job is final; an error of the run is raised here, Ctrl-C as one line
    (:class:`~jupyter_imagine.models.WaitInterrupted`)."""
    try:
        if fresh and wait:
            driver.run()
        elif fresh:
            threading.Thread(target=driver.run, name=f"jupyter-imagine-{driver.batch_id}",
                             daemon=True).start()
            driver.first.wait(5)
        if wait:
            driver.done.wait()
            if driver.error is not None:
                raise driver.error
            for job in list(driver.jobs.values()):
                job.future.result()
    except KeyboardInterrupt:
        raise WaitInterrupted(None, (
            f"stopped waiting; {len(driver.jobs)} of {len(driver.rows)} rows were submitted and "
            "keep running — call ji.batch() again with the same input to resume"
        )) from None


def _dry_run(engine: Engine, batch_id: str, rows: Sequence[_Row]) -> Any:
    """The estimate of the rows of batch ``batch_id`` that have no sent job yet."""
    from ._spend import estimate_jobs

    known = engine.store.batch_rows(batch_id)
    todo = [r for r in rows if r.number not in known or _refused(engine, known[r.number])]
    return estimate_jobs(engine, [(r.provider, "imagine", r.params) for r in todo],
                         title=f"{batch_label(len(todo), None)} not submitted yet")


def _refused(engine: Engine, job_id: str) -> bool:
    record = engine.store.get(job_id)
    return record is not None and _was_refused(
        record.get("error_type"), record.get("submit_state"), record.get("remote_id"))


def _was_refused(error_type: Any, submit_state: Any, remote_id: Any = None) -> bool:
    """A job a budget refused (never sent), or that the provider refused for want of credits
    (it took nothing on: no remote id): its row may be submitted again."""
    if error_type == BudgetExceeded.__name__:
        return submit_state == "pending"
    return error_type == QuotaExceeded.__name__ and not remote_id


def _job_refused(job: Job) -> bool:
    return _was_refused(job.error_type, job.submit_state, job.remote_id)


def unsubmitted(rows: Sequence[_Row], jobs: Mapping[int, Job]) -> list[int]:
    """Row numbers with no job, or whose job a budget refused (never sent)."""
    return [r.number for r in rows if (job := jobs.get(r.number)) is None
            or _job_refused(job)]


def _budget_note(rows: Sequence[_Row], jobs: Mapping[int, Job]) -> str | None:
    """The progress's closing line when a budget stopped the batch, else ``None``."""
    left = unsubmitted(rows, jobs)
    if not left or not any(_job_refused(j) for j in jobs.values()):
        return None
    return (f"stopped at a budget or out of credits: {len(left)} row"
            f"{'' if len(left) == 1 else 's'} left unsubmitted (df.attrs['unsubmitted']); raise "
            "the budget or top up, then call batch() again to resume")


def _check_limit(max_concurrency: int | None) -> None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise InvalidRequest(f"max_concurrency must be a whole number ≥ 1, not {max_concurrency!r}")


_RUNNING: dict[str, _Driver] = {}
_RUNNING_LOCK = threading.Lock()


def _driver_for(engine: Engine, batch_id: str, rows: list[_Row], limit: int,
                timeout: float | None, budget: float | None = None) -> tuple[_Driver, bool]:
    """The batch's driver and whether it is new: the one submitting this batch right now
    (``wait=False`` earlier) is joined, else a new one starts from the rows already stored."""
    known = engine.store.batch_rows(batch_id)
    if known and max(known) >= len(rows):
        raise InvalidRequest(
            f"batch {batch_id!r} already has {max(known) + 1}+ rows, this input has {len(rows)}; "
            "give another name to start a new batch"
        )
    with _RUNNING_LOCK:
        driver = _RUNNING.get(batch_id)
        if driver is not None and driver.engine is engine and not driver.done.is_set():
            return driver, False
        jobs = _known_jobs(engine, batch_id, rows, known)
        driver = _RUNNING[batch_id] = _Driver(engine, batch_id, rows, jobs, limit, timeout,
                                              budget)
        return driver, True


def _known_jobs(engine: Engine, batch_id: str, rows: Sequence[_Row],
                known: Mapping[int, str]) -> dict[int, Job]:
    """The jobs already stored for the batch's rows, checked against the input."""
    jobs: dict[int, Job] = {}
    for number, job_id in sorted(known.items()):
        job = engine.get(job_id)
        row = rows[number]
        if _job_refused(job) and job.provider == row.provider:
            engine.store.delete(job.id)  # never taken on: this run submits the row anew
            continue
        if job.prompt != row.prompt or job.provider != row.provider:
            raise InvalidRequest(
                f"batch {batch_id!r} row {number} holds a different job ({job.provider}: "
                f"{job.prompt[:40]!r}); give another name to start a new batch"
            )
        jobs[number] = job
    if jobs:
        logger.info("batch %s: resuming, %d of %d rows already submitted", batch_id, len(jobs),
                    len(rows))
    return jobs


class _Driver:
    """Submits the rows that have no job yet, keeping at most ``limit`` of the batch in flight.

    One per batch id and process at a time (:data:`_RUNNING`); a second ``batch()`` call for
    the same batch joins it instead of submitting again.
    """

    def __init__(self, engine: Engine, batch_id: str, rows: list[_Row], jobs: dict[int, Job],
                 limit: int, timeout: float | None, budget: float | None = None) -> None:
        self.engine = engine
        self.batch_id = batch_id
        self.rows = rows
        self.jobs = jobs
        self.limit = limit
        self.timeout = timeout
        self.budget = budget
        self.refused = threading.Event()  # a budget refused a job: submit no more rows
        self.watchers: list[Any] = []  # observers of every job (progress displays)
        self.stops: dict[Any, list[Any]] = {}  # watcher → its unsubscribes
        self.first = threading.Event()  # the first free slots are filled
        self.done = threading.Event()  # every row has a job (or the run stopped)
        self.error: BaseException | None = None

    def unwatch(self, watcher: Any, stops: list[Any]) -> None:
        """Stop calling ``watcher``: for every job it observes, and ``stops`` too."""
        if watcher in self.watchers:
            self.watchers.remove(watcher)
        for stop in stops + self.stops.pop(watcher, []):
            stop()

    def run(self) -> None:
        pending = [row for row in self.rows if row.number not in self.jobs]
        try:
            while pending and not self.refused.is_set():
                in_flight = [j for j in self.jobs.values() if not j.status.final]
                while pending and len(in_flight) < self.limit and not self.refused.is_set():
                    if not self.engine.running:  # the engine was closed: stop, resume later
                        return
                    row = pending.pop(0)
                    in_flight.append(self._submit(row))
                self.first.set()
                if pending:
                    concurrent.futures.wait(
                        [j.future for j in in_flight],
                        return_when=concurrent.futures.FIRST_COMPLETED,
                    )
                    for job in in_flight:  # before any observer may have run
                        self._check_refused(job)
        except BaseException as exc:  # the caller re-raises it (also Ctrl-C)
            self.error = exc
            if isinstance(exc, Exception):
                logger.warning("batch %s stopped: %s", self.batch_id, exc)
        finally:
            self.first.set()
            self.done.set()
            with _RUNNING_LOCK:
                if _RUNNING.get(self.batch_id) is self:
                    del _RUNNING[self.batch_id]

    def _submit(self, row: _Row) -> Job:
        try:
            job = self.engine.imagine(
                row.prompt, provider=row.provider, timeout=self.timeout,
                batch_id=self.batch_id, batch_row=row.number, budget=self.budget, **row.params
            )
        except InvalidRequest:
            # another process (a second kernel on the same history) took this row meanwhile
            job_id = self.engine.store.batch_rows(self.batch_id).get(row.number)
            if job_id is None:
                raise
            job = self.engine.get(job_id)
        self.jobs[row.number] = job
        job.observe(self._check_refused)
        self._check_refused(job)
        for watcher in list(self.watchers):
            self.stops.setdefault(watcher, []).append(job.observe(watcher))
            watcher(job)  # after observing, so a change in between is not missed
        return job


    def _check_refused(self, job: Job, fields: frozenset[str] = frozenset({"status"})) -> None:
        if "status" in fields and _job_refused(job):
            if not self.refused.is_set():
                logger.warning("batch %s: %s", self.batch_id, job.error)
            self.refused.set()


def _result(frame: pd.DataFrame, rows: list[_Row], jobs: Mapping[int, Job],
            batch_id: str) -> pd.DataFrame:
    from .store import STATUS_ORDER

    out = frame.copy()
    found = [jobs.get(row.number) for row in rows]
    out["provider"] = [row.provider for row in rows]
    out["id"] = pd.Series([j.id if j else None for j in found], index=out.index,
                          dtype=pd.Series(["x"]).dtype)
    out["status"] = pd.Categorical(
        [j.status.value if j else None for j in found], categories=list(STATUS_ORDER)
    )
    out["image_paths"] = pd.Series(
        [[i.path for i in j.images if i.path and i.role == "image"] if j else [] for j in found],
        index=out.index, dtype=object,
    )
    out["error"] = pd.Series([(j.error or None) if j else None for j in found], index=out.index,
                             dtype=pd.Series(["x"]).dtype)
    out.attrs["batch_id"] = batch_id
    out.attrs["unsubmitted"] = [out.index[n] for n in unsubmitted(rows, jobs)]
    return out
