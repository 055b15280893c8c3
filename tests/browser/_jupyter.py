"""Helpers for driving JupyterLab / Notebook 7 in headless Chromium (see conftest.py)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("JUPYTER_IMAGINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Sandbox clock speed for the kernels (an imagine takes 40 simulated seconds).
SPEED = "50"
#: The kernel is ready (needs expose_app_in_browser).
KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const s = w && w.sessionContext;
  const k = s && s.session && s.session.kernel;
  return !!(s && s.isReady && k && k.status === 'idle' && k.connectionStatus === 'connected');
}"""
#: Where widget code lives in a stack trace.
WIDGET_CODE = ("jupyter-widgets", "anywidget", "blob:")
_DIRS = ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
         "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kernel_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.endswith(("_API_KEY", "_BASE_URL")) or k.startswith(("NEUROFLASH_",
                                                                           "JUPYTER_IMAGINE_")))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        JUPYTER_IMAGINE_HOME=str(home),
        JUPYTER_IMAGINE_SANDBOX_SPEED=SPEED,
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


class JupyterServer:
    """``jupyter lab`` or ``jupyter notebook`` on 127.0.0.1, isolated in ``base``.

    The folders survive :meth:`stop`, so a restarted server trusts the notebooks it signed.
    """

    def __init__(self, app: str, base: Path) -> None:
        self.app = app
        self.base = base
        self.root = base / "notebooks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = _kernel_env(base / "imagine-home")
        for name in _DIRS:
            folder = base / name.lower()
            folder.mkdir(exist_ok=True)
            self.env[name] = str(folder)
        settings = Path(self.env["JUPYTERLAB_SETTINGS_DIR"])
        if app == "lab":  # Notebook 7 trips over settings of plugins it does not have
            self._settings(
                settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False},
            )
            # every cell in the DOM, so locators see cells outside the viewport
            self._settings(settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
                           {"windowingMode": "none"})
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.token = ""

    @staticmethod
    def _settings(path: Path, value: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))

    def start(self) -> JupyterServer:
        self.port, self.token = _free_port(), secrets.token_hex(16)
        cmd = [sys.executable, "-m", "jupyter", self.app, "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}"]
        if self.app == "lab":
            cmd += ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        else:  # unknown traits make Notebook 7 drop its whole config: only this one
            cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
        log = open(self.base / f"{self.app}-server.log", "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited; see {log.name}")
            try:
                self.api("GET", "/api/status")
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"jupyter {self.app} did not start; see {log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session and kernel (as closing the notebook and its kernel would)."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def add_notebook(self, source: Path, name: str) -> Path:
        target = self.root / name
        shutil.copyfile(source, target)
        return target


class Notebook:
    """One notebook open in a page: run, find cells, save."""

    def __init__(self, page: Any, server: JupyterServer, name: str) -> None:
        self.page = page
        self.server = server
        self.name = name
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"{exc}\n{exc.stack}"))

    @property
    def widget_errors(self) -> list[str]:
        """Uncaught page errors from widget code (ipywidgets, anywidget, our ESM in blob: URLs);
        Notebook 7.6 throws one of its own on every page load, which is not ours to test."""
        return [e for e in self.errors if any(k in e for k in WIDGET_CODE)]

    def open(self, timeout: float = 60_000) -> Notebook:
        path = f"/lab/tree/{self.name}?reset" if self.server.app == "lab" \
            else f"/notebooks/{self.name}"
        self.page.goto(self.server.url(path))
        self.page.wait_for_function(KERNEL_IDLE, timeout=timeout)
        return self

    def menu(self, menu: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel").get_by_text(menu, exact=True).click()
        self.page.locator(".lm-Menu-itemLabel").get_by_text(item, exact=True).click()

    def run_all(self) -> None:
        self.menu("Run", "Run All Cells")

    def cells(self) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell")

    def cell(self, text: str) -> Any:
        """The cell whose input contains ``text``."""
        return self.cells().filter(has=self.page.locator(".jp-InputArea", has_text=text))

    def run_cell(self, cell: Any) -> None:
        cell.locator(".jp-InputPrompt").first.click()
        self.page.keyboard.press("Control+Enter")

    def wait_idle(self, timeout: float = 120_000) -> None:
        self.page.wait_for_function(
            """() => {
              const nb = window.jupyterapp.shell.currentWidget;
              const k = nb.sessionContext.session.kernel;
              const busy = nb.content.widgets.some(c => c.model.type === 'code'
                && (c.promptNode?.textContent || '').includes('*'));
              return k.status === 'idle' && !busy;
            }""",
            timeout=timeout,
        )

    def save(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_function(
            "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=180_000
        )
