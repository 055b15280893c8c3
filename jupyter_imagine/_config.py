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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._secrets import register
from .errors import ConfigurationError

__all__ = ["ProviderSettings", "home", "provider_settings", "sandbox_speed", "secret_param"]

SANDBOX_KEY = "sandbox-key"
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
    sandbox_url = _env("JUPYTER_IMAGINE_SANDBOX_URL")
    forced = (_env("JUPYTER_IMAGINE_SANDBOX") or "auto").lower()
    if forced not in {"auto", "0", "1", "true", "false", "yes", "no"}:
        raise ConfigurationError(
            f"JUPYTER_IMAGINE_SANDBOX must be 0, 1 or auto, not {forced!r}"
        )
    if sandbox_url:
        return ProviderSettings(sandbox_url.rstrip("/") + sandbox_prefix, SANDBOX_KEY, True, False)
    if forced in {"1", "true", "yes"}:
        return ProviderSettings(IN_PROCESS_ROOT + sandbox_prefix, SANDBOX_KEY, True, True)
    base_url = _env(f"{upper}_BASE_URL")
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
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError(
            "JUPYTER_IMAGINE_STORE must be a postgresql://user@host/db URL (unset it for the "
            "personal SQLite history under JUPYTER_IMAGINE_HOME)"
        )
    return value


# stand-in: spend P — the user's price overrides; P's real versions (with key checks) replace these.
_PRICE_OVERRIDES: dict[str, dict[str, float]] = {}


def price_overrides() -> dict[str, dict[str, float]]:  # stand-in: spend P
    """The user's price overrides: provider → {price key: amount} (default: none)."""
    return {name: dict(prices) for name, prices in _PRICE_OVERRIDES.items()}


def set_price_overrides(value: Any) -> None:  # stand-in: spend P
    """Replace the price overrides (``None``: none); a negative or non-finite amount is a
    :class:`ConfigurationError`."""
    import math

    clean: dict[str, dict[str, float]] = {}
    for name, prices in dict(value or {}).items():
        for key, amount in dict(prices).items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
                    math.isfinite(amount) and amount >= 0):
                raise ConfigurationError(
                    f"the price of {name} {key!r} must be a finite number ≥ 0, not {amount!r}")
            clean.setdefault(str(name), {})[str(key)] = float(amount)
    _PRICE_OVERRIDES.clear()
    _PRICE_OVERRIDES.update(clean)
