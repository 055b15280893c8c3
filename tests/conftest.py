"""Shared fixtures. Each section belongs to the module family named in its header."""

from __future__ import annotations

import os

import pytest
from _live_sandbox import LiveSandbox

# Keep the developer's real keys and settings out of every test run.
_ENV_TO_CLEAR = (
    "APIFRAME_API_KEY",
    "APIFRAME_BASE_URL",
    "THENEXTLEG_API_KEY",
    "THENEXTLEG_BASE_URL",
    "BLOCKADE_API_KEY",
    "BLOCKADE_BASE_URL",
    "NEUROFLASH_CLIENT_ID",
    "NEUROFLASH_CLIENT_SECRET",
    "NEUROFLASH_WORKSPACE_ID",
    "NEUROFLASH_BASE_URL",
    "NEUROFLASH_TOKEN_URL",
    "BANATIE_API_KEY",
    "BANATIE_BASE_URL",
    "BANATIE_CDN_URL",
    "JUPYTER_IMAGINE_SANDBOX",
    "JUPYTER_IMAGINE_SANDBOX_URL",
    "JUPYTER_IMAGINE_SANDBOX_BALANCE",
    "JUPYTER_IMAGINE_PROVIDER",
    "JUPYTER_IMAGINE_IMAGES",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path_factory):
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("imagine-home")
    monkeypatch.setenv("JUPYTER_IMAGINE_HOME", str(home))
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_SPEED", "1000")
    yield


# --- progress display fixtures ---
@pytest.fixture
def progress_kernel(monkeypatch):
    """Pretend to be in a Jupyter kernel for ``_display``; returns ``(shown, updates)``: the
    bundles displayed and every update of them."""
    from jupyter_imagine import _display

    shown: list[dict] = []
    updates: list[dict] = []

    class Handle:
        def update(self, obj, raw=False):
            updates.append(obj)

    def display(obj, raw=False, display_id=False):
        shown.append(obj)
        return Handle()

    monkeypatch.setattr(_display, "in_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", display)
    return shown, updates


# --- engine fixtures ---
FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}


@pytest.fixture
def engine(tmp_path):
    """A started engine on a fresh store, with the in-process sandbox at 1000× speed.

    It is also the engine behind ``jupyter_imagine.imagine()`` for the test's duration.
    """
    from jupyter_imagine import api
    from jupyter_imagine.engine import Engine
    from jupyter_imagine.store import Store

    eng = Engine(Store(tmp_path / "home"), **FAST)
    old = api._set_engine(eng)
    eng.start()
    try:
        yield eng
    finally:
        eng.close()
        api._set_engine(old)


@pytest.fixture
def sandbox(engine):
    """The ``SandboxState`` of the engine's in-process sandbox (clock, faults, requests)."""
    return engine.sandbox_app().state.sandbox


# --- live sandbox (real HTTP on loopback) ---
@pytest.fixture
def live_sandbox():
    """A fresh sandbox served over real HTTP on loopback at 1000× speed."""
    server = LiveSandbox()
    try:
        yield server
    finally:
        server.stop()


def pytest_configure(config):
    os.environ.setdefault("PYTHONHASHSEED", "0")


# --- sandbox fixtures ---
@pytest.fixture
def anyio_backend():
    """Run ``@pytest.mark.anyio`` tests on asyncio only (the sandbox and engine use asyncio)."""
    return "asyncio"


# --- store fixtures (both backends) ---
@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the whole run (``tests/_postgres.py``); the test command
    installs Debian's ``postgresql``, so its absence is a failure, never a skip."""
    from _postgres import Server, available

    if not available():
        pytest.fail("PostgreSQL is not installed: run bash scripts/test.sh (it installs it)")
    with Server() as server:
        yield server


_DATABASES = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty database on :func:`pg_server`."""
    return pg_server.create_database(f"t{next(_DATABASES)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_store(request, tmp_path):
    """A fresh store on each backend: the SQLite file under ``tmp_path / "home"``, then a
    fresh PostgreSQL database (images under the same home). The store's contract tests take
    this, so each runs once per backend."""
    from jupyter_imagine.store import Store, open_store

    if request.param == "sqlite":
        store = Store(tmp_path / "home")
    else:
        store = open_store(request.getfixturevalue("pg_url"), home=tmp_path / "home")
    with store:
        yield store
