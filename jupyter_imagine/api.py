"""The public functions: :func:`imagine`, :func:`job`, :func:`history`, :func:`sync_history`,
:func:`batch`, :func:`provider_status`, :func:`client` (a provider's own calls, and the
Midjourney verbs ``describe``, ``blend``, ``faceswap``, ``seed``, ``upscale`` as its methods).

They share one :class:`~jupyter_imagine.engine.Engine`, created on first use (a bare
``import jupyter_imagine`` starts no thread) with the store at ``JUPYTER_IMAGINE_HOME``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .engine import Engine
from .errors import ConfigurationError, InvalidRequest
from .models import Job
from .providers import PROVIDERS, provider_class
from .store import open_store

#: What ``jupyter_imagine`` re-exports from here (``get_engine`` and ``default_provider`` are
#: public for the magics and widgets, not for notebooks).
__all__ = [
    "balance",
    "batch",
    "client",
    "configure",
    "estimate",
    "history",
    "imagine",
    "job",
    "provider_status",
    "sync_history",
]

_UNSET: Any = object()
_engine: Engine | None = None
_engine_lock = threading.Lock()

#: The provider used when none is named (``JUPYTER_IMAGINE_PROVIDER``, default ``apiframe``).
DEFAULT_PROVIDER = "apiframe"


def get_engine() -> Engine:
    """The shared engine, started (and unfinished jobs resumed) on first call."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine(open_store())
        engine = _engine
    return engine.start()


def _set_engine(engine: Engine | None) -> Engine | None:
    """Replace the shared engine (tests, or a notebook that wants another home); returns the old."""
    global _engine
    with _engine_lock:
        old, _engine = _engine, engine
    return old


def default_provider() -> str:
    """``JUPYTER_IMAGINE_PROVIDER`` (any case) or :data:`DEFAULT_PROVIDER`.

    Raises:
        ConfigurationError: the variable is set but names no provider.
    """
    value = os.environ.get("JUPYTER_IMAGINE_PROVIDER", "").strip()
    if not value:
        return DEFAULT_PROVIDER
    try:
        return provider_class(value).name
    except ConfigurationError:  # said again naming the variable: the call named no provider
        raise ConfigurationError(
            f"JUPYTER_IMAGINE_PROVIDER is {value!r}, which is no provider; set it to one of: "
            f"{', '.join(PROVIDERS)}, or unset it for {DEFAULT_PROVIDER}"
        ) from None


def imagine(
    prompt: str,
    *,
    provider: str | None = None,
    kind: str = "imagine",
    wait: bool = False,
    timeout: float | None = None,
    budget: float | None = None,
    **params: Any,
) -> Job:
    """Submit ``prompt`` and return its :class:`Job` at once.

    Args:
        prompt: the prompt, sent untouched (``--ar 16:9``, ``::`` weights, ``{a, b}`` and all).
        provider: ``apiframe`` … (default: ``JUPYTER_IMAGINE_PROVIDER`` or ``apiframe``). With no
            key for it, the job runs in the built-in sandbox and ``job.sandbox`` is ``True``.
        kind: one of the provider's kinds (default ``imagine``; Banatie also ``live``,
            neuroflash ``edit``/``upscale``, Blockade ``skybox``).
        wait: block until the job is final (default ``False``); in a notebook prefer
            ``await job``, which keeps widget clicks live.
        timeout: the job's deadline in seconds (default: the provider's, 15 min for APIFRAME).
        budget: the most this job may cost, in the provider's unit (default ``None``: only the
            session's budgets, :func:`configure`); a job whose price passes a budget fails with
            ``BudgetExceeded`` and is never sent.
        **params: provider parameters, e.g. ``aspect_ratio="3:2"``, ``process_mode="turbo"``.

    Raises:
        ConfigurationError: unknown provider, or a provider forced out of the sandbox with no key.
        InvalidRequest: empty prompt or a parameter the provider does not take.
        JobFailed, JobTimeout: only with ``wait=True``.
    """
    if not isinstance(prompt, str):
        from .errors import InvalidRequest

        raise InvalidRequest(f"the prompt must be a string, not {type(prompt).__name__}")
    job = get_engine().imagine(
        prompt, provider=provider or default_provider(), kind=kind, timeout=timeout,
        budget=budget, **params
    )
    return job.wait() if wait else job


def job(job_id: str) -> Job:
    """Re-attach to a stored job by local id, provider id or a unique id prefix (≥ 6 chars).

    An unfinished job resumes polling. Raises :class:`~jupyter_imagine.errors.NotFound`.
    """
    if not isinstance(job_id, str) or not job_id.strip():
        raise ConfigurationError("give a job id, e.g. jupyter_imagine.job('3f2a9c…')")
    return get_engine().get(job_id.strip())


def _canonical(provider: str | Sequence[str] | None) -> str | list[str] | None:
    """Provider name(s) as the registry spells them (``ConfigurationError`` for unknown)."""
    if provider is None or isinstance(provider, str):
        return provider if provider is None else provider_class(provider).name
    return [provider_class(name).name for name in provider]


def history(
    provider: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    since: Any = None,
    until: Any = None,
    query: str | None = None,
    remote: bool = False,
    limit: int | None = None,
    *,
    user: str | Sequence[str] | None = None,
    include_raw: bool = False,
    keys_as_columns: bool = False,
) -> pd.DataFrame:
    """Every job of every provider as one DataFrame, one row per job, newest first.

    Args:
        provider: only this provider (or these), default ``None``: all.
        status: only this status (or these): queued, running, succeeded, failed, cancelled;
            default ``None``: all.
        since: only jobs created at or after this time (datetime or ISO text; naive = UTC);
            default ``None``.
        until: only jobs created before this time (exclusive); default ``None``.
        query: only jobs whose prompt contains this text (case-insensitive for ASCII letters);
            default ``None``.
        remote: first pull what the providers themselves know and merge it into the local
            history (see :func:`sync_history`; its report, one dict per provider, is in
            ``df.attrs["sync"]``); default ``False``: the local history only.
        limit: at most this many rows, the newest; default ``None``: all.
        user: only jobs created by this user (or these); default ``None``: everyone's.
        include_raw: add a ``raw`` column with each job's last provider payload as a dict,
            secrets stripped; default ``False``.
        keys_as_columns: also give ``provider`` and ``id`` as the first two columns (the index
            levels are then unnamed, so ``df.groupby("provider")`` is not ambiguous); default
            ``False``: they are the index only.

    The index is the key, two levels named ``provider`` (category) and ``id`` (the local job
    id; ``jupyter_imagine.job(id)`` re-attaches): unique and stable across calls, so
    ``df.loc[("apiframe", job_id)]`` is one job, ``df.loc["apiframe"]`` one provider's and
    ``df.groupby("provider")`` works on the level; ``df.reset_index()`` makes them the first
    two columns. The columns, the same for every provider (missing values are NA, never ``""``):

    ============================== ================================================================
    ``kind``, ``status``           category (``status`` in the order queued, running, succeeded,
                                   failed, cancelled)
    ``remote_id``                  the provider's own id
    ``parent_id``, ``root_id``     the job it was started from; the imagine that began its lineage
    ``action``                     the button that started it (``U2``, ``🔄`` …)
    ``prompt``, ``negative_prompt`` text
    ``params``                     dict of the parameters sent (aspect ratio, seed, style, model …)
    ``created_at``, ``started_at``, datetime64[ns, UTC]; started = accepted by the provider
    ``completed_at``
    ``queue_s``, ``run_s``, …      float seconds created→started, →completed; ``total_s`` all
    ``n_images``                   int: result images (not a skybox's thumbnail or depth map)
    ``missing_images``             int: images (grid included) not in the cache yet; each
                                   ``Image.missing`` says why (retrying, or expired)
    ``width``, ``height``          Int64: the first result image's pixel size (NA until known)
    ``image_urls``, ``image_paths`` lists of the result images (provider URLs, which may expire;
                                   the downloaded files)
    ``cost``, ``cost_unit``, …     float, its unit and ``cost_source`` (provider|prices), else NA
    ``error``                      text
    ``user``, ``host``             category: who created the job, where (NA if not recorded)
    ``sandbox``                    bool
    ============================== ================================================================

    ``df.imagine`` adds gallery, show, reroll, export, spend and jobs to a frame or any slice.

    Called again while the whole-history frame it last returned lives (a notebook's ``Out``),
    it reads only what changed (SQLite); the frames then share the dicts and lists in ``params``,
    ``image_urls`` and ``image_paths``: copy one before changing it in place.
    """
    provider = _canonical(provider)
    report = sync_history(provider=provider) if remote else None
    frame = get_engine().store.frame(
        provider=provider, status=status, since=since, until=until, query=query, user=user,
        limit=limit, include_raw=include_raw, keys_as_columns=keys_as_columns,
    )
    if report is not None:
        # plain records: pandas compares attrs with == as it propagates them (not a DataFrame)
        frame.attrs["sync"] = report.to_dict("records")
    return frame


def sync_history(
    provider: str | Sequence[str] | None = None,
    *,
    since: Any = None,
    download: bool = True,
    max_concurrency: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Pull what the providers themselves know and merge it into the local history.

    Jobs are matched by (provider, the provider's id): pulling twice adds nothing the second
    time. What each provider gives: Blockade its ``myRequests`` pages, Banatie its generations,
    neuroflash its images (grouped by generation) — whatever ``Provider.remote_history()``
    lists — and for every provider the stored jobs that are not final yet are asked again
    (APIFRAME with ``/fetch-many``, 20 ids per request). A provider that fails half-way keeps
    what it had fetched; its row in the report says what went wrong, and a warning names it.

    Args:
        provider: this provider (or these); default ``None``: every registered provider.
        since: only remote jobs created at or after this time, where the provider can filter
            (default ``None``: everything it lists).
        download: download the images of new succeeded jobs into the cache (default ``True``;
            provider URLs expire).
        max_concurrency: pages in flight per provider for APIs that number their pages
            (default ``None``: the provider's own ``max_concurrency``; ``1``: one at a time).
        progress: show providers done, and per provider pages, rows new/updated and errors,
            while the pull runs (default ``True``; a bar in a notebook, a text bar on stderr
            elsewhere).

    Returns:
        One row per provider: ``provider``, ``pages``, ``listed``, ``new``, ``updated``,
        ``refreshed``, ``seconds``, ``error`` (NA when it worked).
    """
    from . import _pull

    if provider is None:
        names = list(PROVIDERS)
    else:
        names = [provider_class(p).name for p in ([provider] if isinstance(provider, str)
                                                  else provider)]
    return _pull.sync(
        get_engine(), names, since=since, download=download, max_concurrency=max_concurrency,
        progress=progress,
    )


def batch(
    data: Any,
    prompt: str = "prompt",
    *,
    provider: str | None = None,
    max_concurrency: int | None = None,
    name: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
    progress: bool = True,
    budget: float | None = None,
    dry_run: bool = False,
) -> Any:
    """Submit many prompts; return the input as a frame with job ids, statuses and images.

    See :func:`jupyter_imagine._batch.batch` for the details; in short: ``data`` is a
    DataFrame (its ``prompt`` column is the prompt, every other column a parameter, a
    ``provider`` column picks the provider per row) or a list of prompts or of dicts. Calling
    it again with the same input (or the same ``name``) resumes the batch from the history
    instead of submitting it again, also after a kernel restart.

    ``budget`` (default ``None``) caps what this batch may cost, in the provider's unit: it
    stops submitting there, finishes what is in flight, lists the rows left in
    ``df.attrs["unsubmitted"]``, and the same call with a larger budget resumes. With
    ``dry_run=True`` nothing is sent: the estimate of the rows still to submit is returned
    (see :func:`estimate`).
    """
    from ._batch import batch as run

    return run(
        data, prompt, engine=get_engine(), provider=provider or default_provider(),
        max_concurrency=max_concurrency, name=name, wait=wait, timeout=timeout,
        progress=progress, budget=budget, dry_run=dry_run,
    )


def estimate(
    prompts: Any,
    *,
    provider: str | None = None,
    actions: Sequence[str] = (),
) -> Any:
    """What jobs would cost, before anything is sent: one job per prompt of ``prompts`` (one
    prompt, a list, or a frame such as ``history()``'s with ``prompt``/``provider``/``kind``/
    ``params`` columns) plus one per label of ``actions`` on each (``["U1", "V2"]``).

    Returns an estimate (``.frame``; it displays as a table): per provider and unit the jobs
    priced, those nothing publishes a price for, the expected total, the provider's balance
    (:func:`balance`), the session's budget left, and whether it fits. Prices are each
    provider's published table, or yours (``configure(prices=…)``).

    Args:
        provider: for rows that name none (default: ``JUPYTER_IMAGINE_PROVIDER`` or
            ``apiframe``).
        actions: action labels to price on every prompt's job, default none.
    """
    from ._spend import estimate as run

    return run(get_engine(), prompts, provider=provider or default_provider(),
               actions=list(actions))


def balance(provider: str | Sequence[str] | None = None, *, refresh: bool = False) -> Any:
    """What each provider with a key (the sandbox counts) reports as left, and when it was read.

    Read at once on the engine, a few seconds at most (a provider that fails or is slow shows
    its one-line error in its row), and cached for 60 s (``refresh=True``: read now). Returns a
    table (``.frame``): provider, unit, left, limit, plan, resets_at, read_at, error. Providers
    that expose nothing (Blockade) show NA.

    Args:
        provider: only this provider (or these); default ``None``: every configured one.
    """
    from ._spend import balances

    names = [provider] if isinstance(provider, str) else provider
    return balances(get_engine(), names, refresh=refresh)


def configure(*, budget: Any = _UNSET, prices: Any = _UNSET,
              store: Any = _UNSET) -> dict[str, Any]:
    """Session settings for spending and where the history lives; returns them as they are now.

    Args:
        budget: per provider, the most to spend per period: ``{"apiframe": 200}`` (per UTC
            day), ``{"apiframe": (200, "week")}``, ``"200/month"``, or ``{"amount": 200,
            "period": "session", "unit": "credits"}``; ``None`` clears it. Every kernel on the
            same history counts against it; a job that would pass it fails with
            ``BudgetExceeded`` and is never sent. Same as ``%config ImagineMagics.budget``.
        prices: per provider, your own prices by price key (``{"apiframe": {"imagine": 5}}``),
            replacing the published ones in estimates, reservations and the ``cost`` column
            (source ``prices``); ``None`` clears them. Same as ``%config ImagineMagics.prices``.
        store: the history to use from now on: a ``postgresql://`` URL (the team store), a
            folder (a SQLite history there), or ``None`` (``JUPYTER_IMAGINE_STORE``, else the
            personal history under ``JUPYTER_IMAGINE_HOME``). New jobs go there; jobs still
            running go on to their end in the history they started in (and children started
            from them too), then the session lets that history go. Same as ``%config
            ImagineMagics.store``.

    Raises:
        ConfigurationError: an unknown provider, a negative amount, an unknown period, a
            budget ``unit`` other than the one the provider prices in (it would never bind).
        StorageError: the store cannot be opened (the session keeps its current one).
    """
    from . import _config

    if store is not _UNSET:
        _switch_store(store)
    if budget is not _UNSET:
        _check_budget(_config.parse_budget(budget))
        _config.set_budget(budget)
    if prices is not _UNSET:
        for name in dict(prices or {}):
            provider_class(name)
        _config.set_price_overrides(prices)
    with _engine_lock:
        where = str(_engine.store.path) if _engine is not None else None
    return {"budget": {n: (r.amount, r.period) for n, r in _config.budget_rules().items()},
            "prices": _config.price_overrides(), "store": where}


def _check_budget(rules: Mapping[str, Any]) -> None:
    """Refuse a budget for an unknown provider, or one in a unit its prices are not in (it
    would never be held against anything)."""
    for name, rule in rules.items():
        cls = provider_class(name)
        if rule.unit is not None and rule.unit != cls.PRICE_UNIT:
            raise ConfigurationError(
                f"the budget of {name} is in {rule.unit!r}, but {cls.label} prices its jobs in "
                f"{cls.PRICE_UNIT}, so it would never bind; give it in {cls.PRICE_UNIT} or "
                "leave unit out"
            )


def _switch_store(target: str | os.PathLike[str] | None) -> None:
    """Open ``target`` (see :func:`configure`), then make it the session engine's store."""
    engine = Engine(open_store(None if target is None else str(target)))
    old = _set_engine(engine)
    if old is not None:
        old.retire()  # its running jobs end where they started, then it closes


def provider_status() -> pd.DataFrame:
    """Every provider: whether its key is set, and whether it runs in the sandbox."""
    rows = []
    for name, cls in PROVIDERS.items():
        extra = getattr(cls, "extra_env", ())
        keys = tuple(extra[:2]) if extra else (cls.env_key,)
        row: dict[str, Any] = {
            "provider": name,
            "label": cls.label,
            "key": " + ".join(keys),
            "key_set": all(os.environ.get(k, "").strip() for k in keys),
        }
        try:
            settings = cls.env_settings()
            row.update(sandbox=settings.sandbox, base_url=settings.base_url, problem=None)
        except ConfigurationError as exc:
            row.update(sandbox=False, base_url=None, problem=str(exc))
        rows.append(row)
    return pd.DataFrame(rows)


def _image_url(image: Any, name: str) -> str:
    """A URL from a URL string, an :class:`~jupyter_imagine.models.Image` or a finished Job."""
    from .models import Image

    if isinstance(image, Job):
        if not image.images:
            from .errors import InvalidRequest

            raise InvalidRequest(f"{name}: job {image.id} has no images yet; wait for it first")
        image = image.images[0]
    if isinstance(image, Image):
        image = image.url
    return image


class ProviderClient:
    """Synchronous access to one provider's own calls, run on the engine's loop.

    ``jupyter_imagine.client("apiframe").account()`` → APIFRAME's ``GET /account``. Every public
    coroutine method of the provider class is reachable this way; ``dir()`` lists them. The
    Midjourney verbs that start jobs (:meth:`describe`, :meth:`blend`, :meth:`faceswap`,
    :meth:`seed`, :meth:`upscale`) are methods here too: ``ji.client("apiframe").describe(url)``.
    """

    def __init__(self, name: str) -> None:
        self._cls = provider_class(name)

    # ------------------------------------------------------------ Midjourney verbs (jobs)
    # APIFRAME (and, where it has the kind, TheNextLeg): jobs that are not a button of a grid.
    def _start(self, kind: str, wait: bool, **params: Any) -> Job:
        job = get_engine().imagine("", provider=self._cls.name, kind=kind, **params)
        return job.wait() if wait else job

    def describe(self, image: Any, *, wait: bool = False, **params: Any) -> Job:
        """Ask for four prompts that would draw ``image``; they land in
        ``job.extras["prompts"]``.

        Args:
            image: a public image URL, an :class:`Image` or a finished Job (its first image).
            wait: block until done (default ``False``).
        """
        return self._start("describe", wait, image_url=_image_url(image, "describe"), **params)

    def blend(self, images: Any, *, wait: bool = False, **params: Any) -> Job:
        """Blend 2–5 images into a new 2×2 grid (``dimension`` square (default), portrait or
        landscape on APIFRAME).

        Args:
            images: image URLs, :class:`Image` objects or finished Jobs.
            wait: block until done (default ``False``).
        """
        urls = [_image_url(i, "blend") for i in images]
        return self._start("blend", wait, image_urls=urls, **params)

    def faceswap(self, target: Any, swap: Any, *, wait: bool = False) -> Job:
        """Put the face of ``swap`` onto ``target`` (each one face; URLs, Images or Jobs);
        ``wait`` (default ``False``) blocks until done."""
        return self._start("faceswap", wait, target_image_url=_image_url(target, "faceswap"),
                           swap_image_url=_image_url(swap, "faceswap"))

    def seed(self, job: Job | str, *, timeout: float | None = None) -> str:
        """The Midjourney seed of ``job`` (this provider's job, or its id; a string), fetched
        with a ``seed`` job and also kept in ``job.extras["seed"]``. Blocks until the provider
        answers (default timeout: the provider's)."""
        job = self._own_job(job, "seed")
        if job.extras.get("seed"):
            return str(job.extras["seed"])
        engine = get_engine()
        child = engine.imagine("", provider=job.provider, kind="seed", parent=job).wait(timeout)
        value = str(child.extras.get("seed", ""))
        engine.defer(engine.annotate, job, seed=value).result(timeout)
        return value

    def upscale(self, image: Any, *, factor: int = 2, wait: bool = False) -> Job:
        """Upscale any image (≤ 2048×2048) by ``factor`` 2 (default) or 4: APIFRAME's
        ``/upscale-highres`` from an ``image_url``; ``wait`` (default ``False``) blocks."""
        return self._start("upscale", wait, image_url=_image_url(image, "upscale"),
                           type=f"{factor}x")

    def _own_job(self, value: Job | str, verb: str) -> Job:
        """``value`` (a job or a job id) as one of this provider's jobs, else a one-line
        :class:`~jupyter_imagine.errors.InvalidRequest`."""
        found = job(value) if isinstance(value, str) else value
        if not isinstance(found, Job):
            raise InvalidRequest(f"{verb}() takes a job or a job id, not {type(value).__name__}")
        if found.provider != self._cls.name:
            raise InvalidRequest(
                f"{verb}() of {self._cls.label} takes one of its own jobs; job {found.id[:8]} "
                f"is {found.provider}'s (use jupyter_imagine.client({found.provider!r}))"
            )
        return found

    def __repr__(self) -> str:
        return f"<ProviderClient {self._cls.name}: {', '.join(self._calls())}>"

    def _calls(self) -> list[str]:
        import inspect

        return sorted(
            n for n, fn in inspect.getmembers(self._cls, inspect.iscoroutinefunction)
            if not n.startswith("_") and n not in _JOB_METHODS
        )

    def __dir__(self) -> list[str]:
        return sorted({*self._calls(), *_VERBS})

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or method not in self._calls():
            raise AttributeError(
                f"{self._cls.label} has no call {method!r}; it has: {', '.join(self._calls())}"
            )

        def call(*args: Any, **kwargs: Any) -> Any:
            return get_engine().call(self._cls.name, method, *args, **kwargs)

        call.__name__ = method
        call.__doc__ = getattr(self._cls, method).__doc__
        return call


#: The job-starting verbs every client has (a provider without the kind refuses them).
_VERBS = ("blend", "describe", "faceswap", "seed", "upscale")
_JOB_METHODS = frozenset(
    {"submit", "poll", "poll_many", "cancel", "download", "remote_history"}
)


def client(provider: str | None = None) -> ProviderClient:
    """The provider's own calls that are not jobs (``account()``, ``styles()`` …), synchronous.

    Args:
        provider: the provider's name (default: the default provider).
    """
    return ProviderClient(provider or default_provider())
