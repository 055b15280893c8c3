"""The sandbox's accounts: what each emulated provider has left, in the unit it counts.

=============  ==============  ==========================================  ========  =========
provider       unit            kept as                                     default   ``low``
=============  ==============  ==========================================  ========  =========
apiframe       credits         ``Apiframe.credits`` (``GET /account``)     10000     8
thenextleg     fast_seconds    every token's ``Account.fast_hours``        15 hours  120
neuroflash     images          the ``images`` quota's amounts (/quotas)    100       2
banatie        requests        the project keys' window (X-RateLimit-*)    10000     5
=============  ==============  ==========================================  ========  =========

``low`` is enough for about two imagines (Banatie: a few requests). Blockade has no account:
its API reports no balance, so the sandbox keeps none and never refuses for credits.

Every submit pays its price out of these (the emulators do that), and an empty account answers
as the real API does: APIFRAME's 402 ``Not enough credits``, TheNextLeg's ``NO_FAST_HOURS``,
neuroflash's 402 quota problem, Banatie's 429 ``RATE_LIMIT_EXCEEDED``.

``JUPYTER_IMAGINE_SANDBOX_BALANCE`` (``low`` or a number, in each provider's unit) sets every
account when a sandbox app is created. A sandbox that keeps its state on disk keeps the balance
it had across a restart, unless the setting changed since the state was saved: then the new
setting applies. :func:`set_balance`, :func:`top_up` and :func:`balance` do the same for
the in-process sandbox(es) of this process; ``/_sandbox/balance`` for a served one.

A Banatie balance of ``n`` makes ``n`` the limit of each window and opens a fresh window;
TheNextLeg's applies to every token's account and to accounts made later; neuroflash's leaves
its limits (raising them if needed) and sets what is used so that ``availableAmount`` is ``n``.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._secrets import get_logger
from ..errors import ConfigurationError
from ._state import SandboxState

__all__ = ["ACCOUNTS", "BALANCE_ENV", "balance", "set_balance", "top_up"]

logger = get_logger(__name__)

#: The environment variable that starts every sandbox account at ``low`` or a number.
BALANCE_ENV = "JUPYTER_IMAGINE_SANDBOX_BALANCE"


@dataclass(frozen=True)
class Account:
    """How one emulator's balance is read and set.

    Attributes:
        unit: the provider's unit.
        low: the ``low`` start (about two imagines).
        read: the emulator → the amount left.
        write: sets the amount left on the emulator.
    """

    unit: str
    low: float
    read: Callable[[Any], float]
    write: Callable[[Any, float], None]


def _whole(amount: float) -> float | int:
    return int(amount) if float(amount).is_integer() else float(amount)


def _set_apiframe(emulator: Any, amount: float) -> None:
    emulator.credits = _whole(amount)


def _tnl_left(emulator: Any) -> float:
    hours = [a.fast_hours for a in emulator.accounts.values()] or [emulator.start_fast_hours]
    return min(hours) * 3600


def _set_tnl(emulator: Any, amount: float) -> None:
    hours = amount / 3600
    emulator.start_fast_hours = hours
    for account in emulator.accounts.values():
        account.fast_hours = hours
        account.fast_total = max(account.fast_total, hours)


def _set_neuroflash(emulator: Any, amount: float) -> None:
    quota = emulator.quotas["images"]
    wanted = int(amount)
    quota.bonusAmount = quota.spilloverAmount = 0
    quota.limitAmount = max(quota.limitAmount, wanted)
    quota.limitAmountDaily = max(quota.limitAmountDaily, wanted)
    quota.usedAmount = quota.limitAmount - wanted
    quota.usedAmountDaily = quota.limitAmountDaily - wanted


def _banatie_left(emulator: Any) -> float:
    limit = emulator.effective_api_limit
    now = emulator.now()
    open_windows = [
        used for start, used in emulator._api_windows.values()
        if now < start + emulator.rate_window
    ]
    return float(max(0, limit - max(open_windows, default=0.0)))


def _set_banatie(emulator: Any, amount: float) -> None:
    emulator.enforce_real_limits = False
    emulator.api_limit = int(amount)
    emulator._api_windows.clear()


#: The accounts, by provider name (see the module docstring).
ACCOUNTS: dict[str, Account] = {
    "apiframe": Account("credits", 8, lambda e: float(e.credits), _set_apiframe),
    "thenextleg": Account("fast_seconds", 120, _tnl_left, _set_tnl),
    "neuroflash": Account(
        "images", 2, lambda e: float(e.quotas["images"].available), _set_neuroflash
    ),
    "banatie": Account("requests", 5, _banatie_left, _set_banatie),
}


# ---------------------------------------------------------------------- one sandbox
def check_amount(provider: str, amount: Any) -> float:
    """``amount`` as a float if ``provider`` has an account and it is a finite number >= 0.

    Raises:
        ConfigurationError: an unknown provider or a bad amount (one line).
    """
    if provider not in ACCOUNTS:
        raise ConfigurationError(
            f"provider must be one of {', '.join(ACCOUNTS)} (blockade reports no balance), "
            f"not {provider!r}"
        )
    number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
    if not number or not (math.isfinite(amount) and amount >= 0):
        raise ConfigurationError(f"the amount must be a finite number >= 0, not {amount!r}")
    return float(amount)


def read(state: SandboxState, provider: str) -> dict[str, Any]:
    """``{"provider", "amount", "unit"}`` of ``provider``'s account in ``state``."""
    account = ACCOUNTS[provider]
    amount = account.read(state.providers[provider])
    return {"provider": provider, "amount": _whole(amount), "unit": account.unit}


def write(state: SandboxState, provider: str, amount: float, *, add: bool = False) -> None:
    """Set (or, with ``add``, top up by) ``amount`` on ``provider``'s account in ``state``."""
    account = ACCOUNTS[provider]
    emulator = state.providers[provider]
    account.write(emulator, amount + (account.read(emulator) if add else 0.0))


def _setting() -> str:
    return os.environ.get(BALANCE_ENV, "").strip().lower()


def restart_balance(state: SandboxState, persistence: Any) -> None:
    """After ``state`` was restored from ``persistence``: apply :data:`BALANCE_ENV` again if it
    changed since the saved state was written, and remember it."""
    raw = _setting()
    saved = persistence.read_meta(BALANCE_ENV)
    if raw and raw != (saved or ""):
        start_balance(state)
        persistence.save(state)
    if raw != (saved or ""):
        persistence.write_meta(BALANCE_ENV, raw)


def start_balance(state: SandboxState) -> None:
    """Apply :data:`BALANCE_ENV` (if set) to every account of a new ``state``; a bad value is
    logged and ignored."""
    raw = _setting()
    if not raw:
        return
    for name, account in ACCOUNTS.items():
        if name not in state.providers:
            continue
        if raw == "low":
            amount = account.low
        else:
            try:
                amount = check_amount(name, float(raw))
            except (ValueError, ConfigurationError):
                logger.warning("%s must be 'low' or a number >= 0, not %r; ignored",
                               BALANCE_ENV, raw)
                return
        account.write(state.providers[name], amount)


# ---------------------------------------------------------------------- in-process sandboxes
_LIVE: weakref.WeakValueDictionary[int, SandboxState] = weakref.WeakValueDictionary()
_PENDING: dict[str, tuple[float, bool]] = {}


def register(state: SandboxState) -> None:
    """Count ``state`` as an in-process sandbox of this process, and give it the balances set
    while none was running."""
    _LIVE[id(state)] = state
    for provider, (amount, add) in list(_PENDING.items()):
        write(state, provider, amount, add=add)
    _PENDING.clear()


def _apply(provider: str, amount: float, add: bool) -> None:
    states = list(_LIVE.values())
    if not states:
        previous = _PENDING.get(provider)
        if add and previous is not None:
            amount, add = previous[0] + amount, previous[1]
        _PENDING[provider] = (amount, add)
        return
    for state in states:
        write(state, provider, amount, add=add)
        persistence = getattr(state, "persistence", None)
        if persistence is not None:
            persistence.save(state)


def set_balance(provider: str, amount: float) -> None:
    """Set what ``provider``'s sandbox account has left, in its unit (``apiframe`` credits,
    ``thenextleg`` fast seconds, ``neuroflash`` images, ``banatie`` requests), in every
    in-process sandbox of this process; with none running yet, the next one starts there.

    Raises:
        ConfigurationError: an unknown provider (blockade has no account) or a bad amount.
    """
    _apply(provider, check_amount(provider, amount), False)


def top_up(provider: str, amount: float) -> None:
    """Add ``amount`` to ``provider``'s sandbox account (see :func:`set_balance`)."""
    _apply(provider, check_amount(provider, amount), True)


def balance(provider: str) -> float | None:
    """What ``provider``'s account has left in the newest in-process sandbox, in its unit;
    with none running, the amount set for the next one, else ``None``."""
    check_amount(provider, 0)
    states = list(_LIVE.values())
    if states:
        return float(read(states[-1], provider)["amount"])
    pending = _PENDING.get(provider)
    return pending[0] if pending is not None and not pending[1] else None
