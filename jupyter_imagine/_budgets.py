"""Budgets: which ones a job is sent against, its reservation in the store, and the refusal.

Before the engine sends a job (step 2 of :mod:`jupyter_imagine.engine`) it reserves the job's
expected cost — :meth:`Provider.price <jupyter_imagine.providers.Provider.price>` — against
every budget that applies to it, in one store transaction (:meth:`Store.reserve
<jupyter_imagine.store.Store.reserve>`):

* the session's budget of the job's provider (``ji.configure(budget=…)``, ``%config
  ImagineMagics.budget``): what that provider spent in that unit since the period began (UTC
  day, week, month, or since this kernel's engine started), plus what is reserved, from every
  kernel on this history (and every member of a team store);
* a call's own ``budget=``: for :func:`jupyter_imagine.batch`, everything that batch's jobs
  spent and reserved; for :func:`jupyter_imagine.imagine`, the one job's cost.

A refusal is a :class:`~jupyter_imagine.errors.BudgetExceeded`: the job fails with it (its
``error_type``; ``wait()`` raises ``JobFailed`` from it, like any failure), never sent. A job
whose cost nothing publishes (``price()`` is ``None``) is not counted: it is sent, and a warning
says that the budget cannot see it. Once the job is final its reservation is settled with the
recorded cost (:meth:`Provider.cost <jupyter_imagine.providers.Provider.cost>`), or released
when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _config
from ._secrets import get_logger
from .errors import BudgetExceeded, InvalidRequest
from .models import Cost, utcnow
from .providers import provider_class

if TYPE_CHECKING:  # pragma: no cover
    from .models import Job
    from .store import Store

__all__ = ["Budget", "CallBudget", "budgets_for", "check_amount", "reserve"]

log = get_logger(__name__)


@dataclass(frozen=True)
class CallBudget:
    """A call's own ``budget=``: at most ``limit`` for that call's jobs (the batch ``batch_id``'s,
    or only the one job when ``batch_id`` is ``None``)."""

    limit: float
    batch_id: str | None = None


@dataclass(frozen=True)
class Budget:
    """One budget a job is reserved against.

    Attributes:
        label: what it is, for messages (``"apiframe: 200 credits per day (UTC)"``).
        limit: its amount, in the job's cost unit.
        since: the start of its period (``None``: all time).
        batch_id: only this batch's jobs count (``None``: every job of the provider).
        fix: how to raise it, for messages.
        local: only the one job's own cost counts (a single call's ``budget=``).
    """

    label: str
    limit: float
    since: datetime | None
    batch_id: str | None
    fix: str
    local: bool = False


def check_amount(value: Any, what: str = "budget") -> float | None:
    """``value`` as a budget amount (a finite number ≥ 0), ``None`` for ``None``.

    Raises:
        InvalidRequest: anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value < float("inf")):
        raise InvalidRequest(f"{what}= must be a finite number ≥ 0 in the provider's unit "
                             f"(e.g. 200 credits), not {value!r}")
    return float(value)


def budgets_for(provider: str, price: Cost, call: CallBudget | None,
                session_start: datetime, now: datetime | None = None) -> list[Budget]:
    """The budgets a job of ``provider`` with expected cost ``price`` is reserved against. A
    session budget counts its ``unit``, or else the provider's ``PRICE_UNIT`` (where it has
    one), so a price in another unit is not held against it."""
    now = now or utcnow()
    out: list[Budget] = []
    rule = _config.budget_rules().get(provider)
    unit = rule.unit or provider_class(provider).PRICE_UNIT if rule is not None else None
    if rule is not None and unit in (None, price.unit):
        since = _config.period_start(rule.period, now, session_start)
        more = max(rule.amount * 2, rule.amount + price.amount)
        out.append(Budget(
            rule.label(price.unit), rule.amount, since, None,
            f"raise it with ji.configure(budget={{{provider!r}: {more:g}}}) or %config "
            f"ImagineMagics.budget" + (f", or wait for the next {rule.period}"
                                       if rule.period != "session" else ""),
        ))
    if call is not None:
        scope = f"batch {call.batch_id}" if call.batch_id else "this call"
        out.append(Budget(
            f"{scope}'s budget={call.limit:g} {price.unit}", call.limit, None, call.batch_id,
            "pass a larger budget=" + (" (the batch resumes where it stopped)"
                                       if call.batch_id else ""),
            local=call.batch_id is None,
        ))
    return out


def reserve(store: Store, job: Job, price: Cost, budgets: list[Budget]) -> BudgetExceeded | None:
    """Reserve ``price`` for ``job`` against ``budgets`` (one store transaction); the refusal,
    else ``None``. A ``local`` budget is checked here (the job's cost alone)."""
    for budget in budgets:
        if budget.local and price.amount > budget.limit + 1e-9:
            return _refusal(job, price, budget, 0.0, 0.0)
    shared = [b for b in budgets if not b.local]
    if not shared:
        return None
    if store.reserve(job.id, job.provider, price.amount, price.unit, limit=None, since=None,
                     also=[(b.limit, b.since, b.batch_id) for b in shared]):
        return None
    for budget in shared:  # which one refused (read again: only for the message)
        spent = store.spent(job.provider, price.unit, budget.since, batch_id=budget.batch_id)
        held = store.reserved(job.provider, price.unit, budget.since, batch_id=budget.batch_id)
        if spent + held + price.amount > budget.limit + 1e-9:
            return _refusal(job, price, budget, spent, held)
    return _refusal(job, price, shared[0], 0.0, 0.0)  # moved meanwhile: still refused then


def _refusal(job: Job, price: Cost, budget: Budget, spent: float,
             held: float) -> BudgetExceeded:
    return BudgetExceeded(
        f"not sent: this {job.kind} needs {price.amount:g} {price.unit} and the budget "
        f"{budget.label} has {spent:g} spent and {held:g} reserved; {budget.fix}",
        provider=job.provider, budget=budget.label,
    )
