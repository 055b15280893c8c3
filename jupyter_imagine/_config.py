"""Where each provider's requests go, read from the environment.

Resolution for provider ``p`` (``P`` = its upper-case name):

1. ``JUPYTER_IMAGINE_SANDBOX_URL`` set → every provider goes to that running sandbox over
   HTTP (``{url}/{p}``); ``sandbox`` is ``True``.
2. ``JUPYTER_IMAGINE_SANDBOX`` = ``1`` → the in-process sandbox, keys or not.
3. ``P_API_KEY`` set (neuroflash: ``NEUROFLASH_CLIENT_ID`` + ``NEUROFLASH_CLIENT_SECRET``) →
   the real service at ``P_BASE_URL`` or its default.
4. ``JUPYTER_IMAGINE_SANDBOX`` = ``0`` or ``P_BASE_URL`` set, but no key →
   :class:`ConfigurationError` (the provider was forced out of the sandbox).
5. otherwise → the in-process sandbox (default).
"""

from __future__ import annotations

import getpass
import math
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._secrets import register
from .errors import ConfigurationError

__all__ = [
    "TEAM_STORE_SCHEMES",
    "ProviderSettings",
    "home",
    "identity",
    "images_url",
    "price_overrides",
    "provider_settings",
    "register_price_keys",
    "sandbox_speed",
    "secret_param",
    "set_price_overrides",
    "store_url",
]

SANDBOX_KEY = "sandbox-key"
#: How a team store's URL starts (libpq's two spellings); anything else is no team store.
TEAM_STORE_SCHEMES = ("postgresql://", "postgres://")
#: The base URL of the in-process sandbox (reached through httpx.ASGITransport, no socket).
IN_PROCESS_ROOT = "http://sandbox.jupyter-imagine"


@dataclass(frozen=True)
class ProviderSettings:
    """Where one provider's requests go.

    Attributes:
        base_url: the API root (real or sandbox).
        api_key: the key to send; the sandbox's own key in the sandbox. Never shown.
        sandbox: ``True`` when this is the sandbox.
        in_process: ``True`` for the in-process sandbox (ASGI transport, no port).
        extra: other credentials (neuroflash client id/secret, workspace id).
    """

    base_url: str
    api_key: str | None
    sandbox: bool
    in_process: bool
    extra: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # never show the key
        return f"ProviderSettings(base_url={self.base_url!r}, sandbox={self.sandbox})"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _http_url(name: str) -> str | None:
    """Environment variable ``name``, an ``http(s)://host…`` URL, or ``None`` if unset.

    Raises:
        ConfigurationError: it is set but not such a URL (shown without any ``user:password@``).
    """
    value = _env(name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
        shown = value if "@" not in value else (
            value.split("://", 1)[0] + "://…@" + value.rsplit("@", 1)[-1])
        raise ConfigurationError(
            f"{name} must be an http:// or https:// URL with a host, not {shown!r}; fix it, "
            "or unset it"
        )
    return value


def provider_settings(
    name: str, *, env_key: str, default_base_url: str, sandbox_prefix: str,
    extra_keys: tuple[str, ...] = (),
) -> ProviderSettings:
    """Resolve where provider ``name`` goes (see the module docstring)."""
    upper = name.upper()
    key = _env(env_key)
    extra = tuple((k, v) for k in extra_keys if (v := _env(k)) is not None)
    for secret in (key, *(v for k, v in extra if k in extra_keys[:2])):
        register(secret)
    present = {k for k, _ in extra}
    has_credentials = (
        all(k in present for k in extra_keys[:2]) if extra_keys else key is not None
    )
    sandbox_url = _http_url("JUPYTER_IMAGINE_SANDBOX_URL")
    forced = (_env("JUPYTER_IMAGINE_SANDBOX") or "auto").lower()
    if forced not in {"auto", "0", "1", "true", "false", "yes", "no"}:
        raise ConfigurationError(
            f"JUPYTER_IMAGINE_SANDBOX must be 0, 1 or auto, not {forced!r}"
        )
    if sandbox_url:
        return ProviderSettings(sandbox_url.rstrip("/") + sandbox_prefix, SANDBOX_KEY, True, False)
    if forced in {"1", "true", "yes"}:
        return ProviderSettings(IN_PROCESS_ROOT + sandbox_prefix, SANDBOX_KEY, True, True)
    base_url = _http_url(f"{upper}_BASE_URL")
    if has_credentials:
        return ProviderSettings(base_url or default_base_url, key, False, False, extra)
    if forced in {"0", "false", "no"} or base_url:
        why = f"{upper}_BASE_URL is set" if base_url else "JUPYTER_IMAGINE_SANDBOX=0"
        need = " and ".join(extra_keys[:2]) if extra_keys else env_key
        raise ConfigurationError(
            f"{name} is forced out of the sandbox ({why}) but {need} is not set; "
            f"set it, or unset {why.split(' ')[0].split('=')[0]} to use the sandbox"
        )
    return ProviderSettings(IN_PROCESS_ROOT + sandbox_prefix, SANDBOX_KEY, True, True)


def secret_param(provider: str, name: str) -> tuple[str, str | None]:
    """The environment variable that configures the secret parameter ``name`` of
    ``provider`` (``APIFRAME_WEBHOOK_SECRET`` for APIFRAME's ``webhook_secret``) and its value
    (registered as a secret), else ``None``."""
    var = f"{provider.upper()}_{name.upper()}"
    value = _env(var)
    register(value)
    return var, value


def sandbox_speed() -> float:
    """The in-process sandbox's clock speed (``JUPYTER_IMAGINE_SANDBOX_SPEED``, default 10)."""
    return _positive("JUPYTER_IMAGINE_SANDBOX_SPEED", 10.0)


def lease_seconds() -> float:
    """How long an engine's hold on its unfinished jobs lasts without a heartbeat
    (``JUPYTER_IMAGINE_LEASE_SECONDS``, default 30)."""
    return _positive("JUPYTER_IMAGINE_LEASE_SECONDS", 30.0)


def _positive(name: str, default: float) -> float:
    raw = _env(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name} must be a finite number greater than 0")
    return value


def home() -> Path:
    """The folder of the history database and image cache.

    ``JUPYTER_IMAGINE_HOME``, default ``<jupyter data dir>/jupyter_imagine``.
    """
    value = _env("JUPYTER_IMAGINE_HOME")
    if value:
        return Path(value).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "jupyter_imagine"


def store_url() -> str | None:
    """The team store to use instead of the personal SQLite history: a
    ``postgresql://user@host[:port]/db`` URL from ``JUPYTER_IMAGINE_STORE``, else ``None``
    (default: the SQLite file under :func:`home`).

    Raises:
        ConfigurationError: the value is not a ``postgresql://`` (or ``postgres://``) URL.
    """
    value = _env("JUPYTER_IMAGINE_STORE")
    if not value:
        return None
    if not value.startswith(TEAM_STORE_SCHEMES):
        raise ConfigurationError(
            "JUPYTER_IMAGINE_STORE must be a postgresql://user@host/db URL (unset it for the "
            "personal SQLite history under JUPYTER_IMAGINE_HOME)"
        )
    return value


def identity() -> tuple[str, str]:
    """Who this kernel writes jobs as: (user, host). ``JUPYTER_IMAGINE_USER`` and
    ``JUPYTER_IMAGINE_HOST`` override; defaults: the login name (``getpass.getuser()``,
    ``"unknown"`` where there is none) and the host name."""
    user = _env("JUPYTER_IMAGINE_USER")
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no login name for this uid (some containers)
            user = "unknown"
    return user, _env("JUPYTER_IMAGINE_HOST") or socket.gethostname()


# ===================================================================================== prices
#: provider → the price keys its table knows (filled by each Provider subclass as it is defined,
#: so this module needs no import of the providers).
_PRICE_KEYS: dict[str, tuple[str, ...]] = {}
_PRICE_OVERRIDES: dict[str, dict[str, float]] = {}


def register_price_keys(provider: str, keys: Iterable[str]) -> None:
    """Declare the price keys ``provider`` accepts in :func:`set_price_overrides`."""
    _PRICE_KEYS[provider] = tuple(sorted(set(keys)))


def price_overrides() -> dict[str, dict[str, float]]:
    """The user's prices (provider → {price key: amount in the provider's unit}) that replace
    the published tables (a copy; default: none)."""
    return {name: dict(table) for name, table in _PRICE_OVERRIDES.items()}


def set_price_overrides(value: Mapping[str, Mapping[str, float]] | None) -> None:
    """Replace the user's prices with ``value`` (``None`` or ``{}``: the published tables only).

    Raises:
        ConfigurationError: an unknown provider or price key, or an amount that is not a finite
            number >= 0; nothing is changed then.
    """
    checked: dict[str, dict[str, float]] = {}
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError(
            f"prices must be a dict like {{'apiframe': {{'imagine': 4}}}}, not {value!r}"
        )
    for provider, table in (value or {}).items():
        keys = _PRICE_KEYS.get(provider)
        if keys is None:
            known = ", ".join(sorted(_PRICE_KEYS)) or "none"
            raise ConfigurationError(f"prices: unknown provider {provider!r}; known: {known}")
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"prices[{provider!r}] must be a dict of price key → amount, not {table!r}"
            )
        checked[provider] = {key: _price_amount(provider, keys, key, a) for key, a in table.items()}
    _PRICE_OVERRIDES.clear()
    _PRICE_OVERRIDES.update({k: v for k, v in checked.items() if v})


def _price_amount(provider: str, keys: tuple[str, ...], key: Any, amount: Any) -> float:
    if key not in keys:
        raise ConfigurationError(
            f"prices: {provider} has no price key {key!r}; valid keys: {', '.join(keys)}"
        )
    number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
    if not number or not (math.isfinite(amount) and amount >= 0):
        raise ConfigurationError(
            f"prices: {provider} {key!r} must be a finite number >= 0, not {amount!r}"
        )
    return float(amount)


def images_url() -> str | None:
    """The shared image store every machine reads and writes, from ``JUPYTER_IMAGINE_IMAGES``:
    a folder, a ``file://`` URL or any fsspec URL (``s3://bucket/prefix``, ``gcs://…``; those
    need their fsspec backend package). Default ``None``: images stay in the local folder
    ``<JUPYTER_IMAGINE_HOME>/images`` only. Each machine keeps a local read-through copy there
    either way.
    """
    value = _env("JUPYTER_IMAGINE_IMAGES")
    if value is None or "://" in value:
        return value
    return str(Path(value).expanduser())


# ------------------------------------------------------------------------------ budgets
#: The periods a budget can run over: calendar periods in UTC (a week starts on Monday), or the
#: session (since this kernel's engine started).
BUDGET_PERIODS = ("day", "week", "month", "session")
#: The period of a budget given as a bare amount.
DEFAULT_BUDGET_PERIOD = "day"


@dataclass(frozen=True)
class BudgetRule:
    """One provider's spending budget.

    Attributes:
        provider: the provider's name.
        amount: at most this much is spent (and reserved) per period, in ``unit``.
        period: ``day`` (default), ``week``, ``month`` (UTC calendar periods) or ``session``.
        unit: the unit it counts, default ``None``: the unit of the provider's prices.
    """

    provider: str
    amount: float
    period: str = DEFAULT_BUDGET_PERIOD
    unit: str | None = None

    def label(self, unit: str | None = None) -> str:
        """``"apiframe: 200 credits per day"``."""
        per = "this session" if self.period == "session" else f"per {self.period} (UTC)"
        return f"{self.provider}: {self.amount:g} {self.unit or unit or 'units'} {per}"


_BUDGETS: dict[str, BudgetRule] = {}


def parse_budget(value: Any) -> dict[str, BudgetRule]:
    """Budget rules from what a user writes: ``{"apiframe": 200}`` (per
    :data:`DEFAULT_BUDGET_PERIOD`), ``{"apiframe": (200, "week")}``, ``{"apiframe": "200/week"}``
    or ``{"apiframe": {"amount": 200, "period": "week", "unit": "credits"}}``; ``None`` or
    ``{}``: no budget. Provider names are checked by the caller (this layer knows none).

    Raises:
        ConfigurationError: not a mapping, a negative or non-finite amount, an unknown period.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"a budget is a dict of provider → amount, e.g. {{'apiframe': 200}}, not {value!r}")
    return {str(name).strip().lower(): _rule(str(name).strip().lower(), spec)
            for name, spec in value.items()}


def _rule(name: str, spec: Any) -> BudgetRule:
    amount: Any
    period, unit = DEFAULT_BUDGET_PERIOD, None
    if isinstance(spec, Mapping):
        amount, period, unit = spec.get("amount"), spec.get("period", period), spec.get("unit")
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        amount, period = spec
    elif isinstance(spec, str) and "/" in spec:
        amount, period = (part.strip() for part in spec.split("/", 1))
    else:
        amount = spec
    try:
        number = float(amount) if not isinstance(amount, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not (number >= 0 and number != float("inf")):
        raise ConfigurationError(
            f"the budget of {name} must be a finite amount ≥ 0 (e.g. 200, (200, 'week') or "
            f"'200/week'), not {spec!r}")
    if period not in BUDGET_PERIODS:
        raise ConfigurationError(
            f"the budget period of {name} must be one of {', '.join(BUDGET_PERIODS)}, "
            f"not {period!r}")
    return BudgetRule(name, number, str(period), str(unit) if unit else None)


def budget_rules() -> dict[str, BudgetRule]:
    """The session's budgets, provider → :class:`BudgetRule` (default: none)."""
    return dict(_BUDGETS)


def set_budget(value: Any) -> dict[str, BudgetRule]:
    """Replace the session's budgets with :func:`parse_budget` of ``value`` (``None``: none);
    returns them."""
    rules = parse_budget(value)
    _BUDGETS.clear()
    _BUDGETS.update(rules)
    return dict(rules)


def period_start(period: str, now: datetime, session_start: datetime) -> datetime:
    """When the budget period containing ``now`` (tz-aware UTC) began."""
    if period == "session":
        return session_start
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day
