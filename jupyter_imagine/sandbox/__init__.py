"""The sandbox: the providers' own HTTP APIs, emulated in one ASGI app.

With no API key set, every provider runs against this app — in-process through
``httpx.ASGITransport``, or served on a port with ``python -m jupyter_imagine.sandbox``. Each
provider is mounted under a prefix (``/apiframe`` …) and keeps its real paths, fields, status
strings and error shapes below it. Jobs advance on a simulated clock; images are procedural and
follow the semantics of each action (see :mod:`jupyter_imagine.imaging`).

    >>> app = create_app(speed=100)
    >>> state = app.state.sandbox          # clock, tasks, faults, request counter, webhooks
    >>> state.faults.add("/apiframe/fetch", status=429, retry_after=2)
    >>> state.clock.advance(60)            # jump every job a minute ahead

Accounts (:mod:`._accounts`): ``set_balance("apiframe", 8)``, ``top_up(...)`` and
``balance(...)`` set and read what the in-process sandbox's providers have left;
``JUPYTER_IMAGINE_SANDBOX_BALANCE=low`` starts every account nearly empty.

See ``_app.py`` for the control routes (``/_sandbox/...``) and how to add a provider, and each
provider module (``_apiframe.py`` …) for what it emulates, its magic words and its choices.
"""

from ._accounts import BALANCE_ENV, balance, set_balance, top_up
from ._app import PROVIDERS, create_app
from ._clock import SimClock
from ._faults import Fault, FaultInjector
from ._neuroflash import SEEDED_GENERATION_ID
from ._state import SandboxState

#: The sandbox's sample data (rows it seeds so its listings are not empty), by provider: the
#: provider's ids of those jobs. A history pull from the sandbox leaves them out of the user's
#: history: the user never made them.
SAMPLE_REMOTE_IDS: dict[str, frozenset[str]] = {"neuroflash": frozenset({SEEDED_GENERATION_ID})}

__all__ = [
    "BALANCE_ENV",
    "PROVIDERS",
    "SAMPLE_REMOTE_IDS",
    "Fault",
    "FaultInjector",
    "SandboxState",
    "SimClock",
    "balance",
    "create_app",
    "set_balance",
    "top_up",
]
