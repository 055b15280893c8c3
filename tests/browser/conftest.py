"""Fixtures for the browser tests: JupyterLab / Notebook 7 in headless Chromium.

Each server gets its own config, data, runtime, IPython, settings and workspace folders, a free
port and a token; its kernels import this checkout (``PYTHONPATH``) and keep their history in a
temporary ``JUPYTER_IMAGINE_HOME`` with the sandbox sped up. Chromium is Debian's
``/usr/bin/chromium``: never ``playwright install`` (see the project's browser-testing notes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _jupyter import CHROMIUM, CHROMIUM_ARGS, JupyterServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright, for one module: Playwright's sync API keeps
    an asyncio loop running on the main thread while it is open, which would break every later
    test that calls ``asyncio.run()``."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (bash scripts/test.sh installs Debian's)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


#: Where a failed browser test leaves a screenshot of its page (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh 1200×1500 page; a failed test leaves its screenshot in ``test-artifacts/``."""
    context = browser.new_context(viewport={"width": 1200, "height": 1500})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        if request.node.stash.get(_FAILED, False):
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / f"failed-{request.node.name}.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failed page: {shot}")
        context.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A JupyterLab server for the module."""
    server = JupyterServer("lab", tmp_path_factory.mktemp("lab")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A Notebook 7 server for the module."""
    server = JupyterServer("notebook", tmp_path_factory.mktemp("nb7")).start()
    try:
        yield server
    finally:
        server.stop()
