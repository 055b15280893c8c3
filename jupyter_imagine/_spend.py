"""What jobs will cost, and what is left: :func:`estimate` and :func:`balances`.

* :func:`estimate` prices prompts (and the actions to be clicked on them) with each provider's
  published prices (:meth:`Provider.price <jupyter_imagine.providers.Provider.price>`, with the
  user's overrides), and sets the total per provider and unit against what the provider reports
  as left and against the session's budget. Nothing is sent.
* :func:`balances` asks every provider that has a key (the sandbox counts) what it reports as
  left (:meth:`Provider.balance <jupyter_imagine.providers.Provider.balance>`), all at once on
  the engine loop, each with a timeout of :data:`BALANCE_TIMEOUT` s, so a cell never waits longer
  than that; answers are cached for :data:`BALANCE_TTL` s. A provider that fails shows its
  one-line error in its row; one that exposes nothing shows NA.

Both results are small objects with a readable ``repr`` and ``_repr_html_``, and ``.frame``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import _config
from ._secrets import get_logger
from .errors import ImagineError, InvalidRequest, ServiceUnavailable
from .models import Balance, utcnow
from .providers import PROVIDERS, provider_class

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["BALANCE_TIMEOUT", "BALANCE_TTL", "Balances", "Estimate", "balances", "estimate",
           "estimate_jobs", "kind_of_action"]

log = get_logger(__name__)

#: Seconds one provider's balance may take before its row shows a timeout.
BALANCE_TIMEOUT = 4.0
#: Seconds a balance read is reused.
BALANCE_TTL = 60.0

_CACHE: dict[tuple[int, str], tuple[float, Balance | None, str | None]] = {}
_CACHE_LOCK = threading.Lock()

#: The job kind an action label starts (Midjourney labels; others: the label in lower case).
_ACTION_KINDS = {"🔄": "reroll", "Vary (Region)": "vary_region", "Vary (Strong)": "variation",
                 "Vary (Subtle)": "variation", "Zoom Out 2x": "outpaint",
                 "Zoom Out 1.5x": "outpaint", "⬅️": "pan", "➡️": "pan", "⬆️": "pan", "⬇️": "pan"}
_UPSCALE_TYPES = {"Upscale (Subtle)": "subtle", "Upscale (Creative)": "creative",
                  "Upscale (2x)": "2x", "Upscale (4x)": "4x"}


def kind_of_action(label: str) -> tuple[str, dict[str, Any]]:
    """``(kind, params)`` of the child job the action ``label`` starts, for pricing."""
    label = str(label).strip()
    if label in _UPSCALE_TYPES:
        return "upscale", {"type": _UPSCALE_TYPES[label]}
    if len(label) == 2 and label[0] in "UV" and label[1] in "1234":
        return ("upscale" if label[0] == "U" else "variation"), {}
    return _ACTION_KINDS.get(label, label.lower()), {}


# ====================================================================== estimates
@dataclass
class Estimate:
    """The expected cost of some jobs, per provider and unit, against balances and budgets.

    Attributes:
        frame: one row per (provider, unit): ``jobs`` priced, ``unpriced`` (jobs nothing
            publishes a price for: not in the total), ``expected`` (the total), ``balance``
            (what the provider reports left in that unit, NA if unknown), ``budget_left``
            (the session's budget minus what is spent and reserved, NA without one) and
            ``fits`` (``expected`` fits both, where known).
        title: what was estimated.
    """

    frame: pd.DataFrame
    title: str = "estimate"

    def total(self, provider: str, unit: str | None = None) -> float:
        """The expected total of ``provider`` (in ``unit``, default its only unit)."""
        rows = self.frame[self.frame["provider"] == provider]
        if unit is not None:
            rows = rows[rows["unit"] == unit]
        return float(rows["expected"].sum())

    def __repr__(self) -> str:
        if self.frame.empty:
            return f"{self.title}: nothing to price"
        return f"{self.title}:\n{self.frame.to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<p><b>{self.title}</b></p>" + self.frame.to_html(index=False, na_rep="–")


def _items(data: Any, provider: str | None, actions: Sequence[str]) -> list[
        tuple[str, str, dict[str, Any]]]:
    """``(provider, kind, params)`` for each prompt of ``data`` and each of ``actions`` on it."""
    if isinstance(data, str):
        data = [data]
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index() if "provider" in (data.index.names or []) else data
        records = frame.to_dict("records")
    elif isinstance(data, (pd.Series, Iterable)):
        records = [{"prompt": p} for p in data]
    else:
        raise InvalidRequest(f"estimate() takes prompts or a frame, not {type(data).__name__}")
    out: list[tuple[str, str, dict[str, Any]]] = []
    for record in records:
        name = record.get("provider") if isinstance(record.get("provider"), str) else provider
        if name is None:
            raise InvalidRequest("estimate() needs provider= (or a 'provider' column)")
        params = record.get("params") if isinstance(record.get("params"), Mapping) else {}
        kind = record.get("kind") if isinstance(record.get("kind"), str) else "imagine"
        out.append((provider_class(name).name, kind, dict(params)))
        for label in actions:
            child, extra = kind_of_action(label)
            out.append((provider_class(name).name, child, extra))
    return out


def estimate(engine: Engine, data: Any, *, provider: str | None = None,
             actions: Sequence[str] = (), with_balance: bool = True) -> Estimate:
    """The expected cost of one job per prompt of ``data`` (a prompt, a list of them, or a
    frame with ``prompt``, ``provider``, ``kind``, ``params`` columns such as ``history()``)
    plus one job per label of ``actions`` on each (``["U1", "V2"]``), by ``provider`` where a
    row names none. ``with_balance`` (default ``True``) reads the balances too."""
    items = _items(data, provider, actions)
    count = len(items) // (1 + len(actions))
    title = f"estimate of {count} prompt{'' if count == 1 else 's'}"
    if actions:
        title += f" with {', '.join(actions)} on each"
    return estimate_jobs(engine, items, title=title, with_balance=with_balance)


def estimate_jobs(engine: Engine, items: Iterable[tuple[str, str, Mapping[str, Any]]], *,
                  title: str = "estimate", with_balance: bool = True) -> Estimate:
    """The :class:`Estimate` of jobs given as ``(provider, kind, params)``."""
    totals: dict[tuple[str, str | None], list[float]] = {}
    for name, kind, params in items:
        price = provider_class(name).price(kind, params)
        key = (name, price.unit if price is not None else None)
        slot = totals.setdefault(key, [0, 0, 0.0])
        if price is None:
            slot[1] += 1
        else:
            slot[0] += 1
            slot[2] += price.amount
    left = balances(engine, [n for n, _ in totals]) if with_balance and totals else None
    rows = [_estimate_row(engine, name, unit, *slot, left) for (name, unit), slot in
            sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
    columns = ["provider", "unit", "jobs", "unpriced", "expected", "balance", "budget_left",
               "fits"]
    frame = pd.DataFrame(rows, columns=columns)
    for name in ("expected", "balance", "budget_left"):
        frame[name] = frame[name].astype("float64")  # None → NaN: NA in the table
    return Estimate(frame, title)


def _estimate_row(engine: Engine, name: str, unit: str | None, jobs: float, unpriced: float,
                  expected: float, left: Balances | None) -> dict[str, Any]:
    balance = left.amount(name, unit) if left is not None and unit else None
    budget_left = _budget_left(engine, name, unit) if unit else None
    fits = all(expected <= room for room in (balance, budget_left) if room is not None)
    return {"provider": name, "unit": unit, "jobs": int(jobs), "unpriced": int(unpriced),
            "expected": expected if unit else None, "balance": balance,
            "budget_left": budget_left, "fits": fits if unit else None}


def _budget_left(engine: Engine, name: str, unit: str) -> float | None:
    rule = _config.budget_rules().get(name)
    if rule is None or (rule.unit is not None and rule.unit != unit):
        return None
    since = _config.period_start(rule.period, utcnow(), engine.started_at)
    used = engine.store.spent(name, unit, since) + engine.store.reserved(name, unit, since)
    return rule.amount - used


# ====================================================================== balances
@dataclass
class Balances:
    """What each provider reports as left: :attr:`frame` has one row per provider and unit —
    ``provider``, ``unit``, ``left``, ``limit``, ``plan``, ``resets_at``, ``read_at``, ``error``
    (the one-line reason a provider could not be read; NA otherwise)."""

    frame: pd.DataFrame
    reports: dict[str, Balance | None] = field(default_factory=dict)

    def amount(self, provider: str, unit: str) -> float | None:
        """What ``provider`` reports left in ``unit``, else ``None``."""
        report = self.reports.get(provider)
        value = report.amounts.get(unit) if report is not None else None
        return float(value) if value is not None else None

    def __repr__(self) -> str:
        return "balances:\n" + self.frame.to_string(index=False)

    def _repr_html_(self) -> str:
        return "<p><b>balances</b></p>" + self.frame.to_html(index=False, na_rep="–")


def configured_providers() -> list[str]:
    """The providers with a key, or in the sandbox (every one with no key, by default)."""
    out = []
    for name, cls in PROVIDERS.items():
        try:
            cls.env_settings()
        except ImagineError:
            continue
        out.append(name)
    return out


def balances(engine: Engine, providers: Iterable[str] | None = None, *,
             refresh: bool = False) -> Balances:
    """The :class:`Balances` of ``providers`` (default: :func:`configured_providers`), read at
    most every :data:`BALANCE_TTL` s (``refresh=True`` reads now)."""
    names = list(dict.fromkeys(provider_class(n).name for n in (
        providers if providers is not None else configured_providers())))
    now = time.monotonic()
    with _CACHE_LOCK:
        cached = {n: _CACHE[(id(engine), n)] for n in names if (id(engine), n) in _CACHE
                  and not refresh and now - _CACHE[(id(engine), n)][0] < BALANCE_TTL}
    fresh = _read(engine, [n for n in names if n not in cached])
    with _CACHE_LOCK:
        for name, (report, error) in fresh.items():
            _CACHE[(id(engine), name)] = (now, report, error)
    got = {**{n: (c[1], c[2]) for n, c in cached.items()}, **fresh}
    rows = [row for name in names for row in _balance_rows(name, *got[name])]
    columns = ["provider", "unit", "left", "limit", "plan", "resets_at", "read_at", "error"]
    return Balances(pd.DataFrame(rows, columns=columns), {n: got[n][0] for n in names})


def _read(engine: Engine, names: list[str]) -> dict[str, tuple[Balance | None, str | None]]:
    """Each provider's balance, read at once on the engine loop; ``(report, error)`` each."""
    if not names:
        return {}
    instances = []
    out: dict[str, tuple[Balance | None, str | None]] = {}
    for name in names:
        try:
            instances.append(engine.provider(name, prepare=False))
        except ImagineError as exc:
            out[name] = (None, str(exc))

    async def one(instance: Any) -> tuple[Balance | None, str | None]:
        try:
            return await asyncio.wait_for(instance.balance(), BALANCE_TIMEOUT), None
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            return None, str(ServiceUnavailable(
                f"{instance.label} did not report its balance within {BALANCE_TIMEOUT:g} s"))
        except ImagineError as exc:
            return None, str(exc)

    async def every() -> list[tuple[Balance | None, str | None]]:
        return list(await asyncio.gather(*(one(i) for i in instances)))

    future = engine.run(every())
    try:
        results = future.result(BALANCE_TIMEOUT + 2)
    except concurrent.futures.TimeoutError:  # the engine loop is busy: never hold the cell
        future.cancel()
        late = f"no answer within {BALANCE_TIMEOUT + 2:g} s (the engine is busy); try again"
        results = [(None, late)] * len(instances)
    out.update({type(i).name: r for i, r in zip(instances, results, strict=True)})
    return out


def _balance_rows(name: str, report: Balance | None, error: str | None) -> list[dict[str, Any]]:
    base = {"provider": name, "unit": None, "left": None, "limit": None, "plan": None,
            "resets_at": None, "read_at": None, "error": error}
    if report is None or not report.amounts:
        extra = {"plan": report.plan, "read_at": report.read_at} if report is not None else {}
        return [{**base, **extra}]
    return [{**base, "unit": unit, "left": float(amount), "limit": report.limits.get(unit),
             "plan": report.plan, "resets_at": report.resets_at, "read_at": report.read_at}
            for unit, amount in report.amounts.items()]
