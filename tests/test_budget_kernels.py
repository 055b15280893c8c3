"""Two kernels (real subprocesses) on one history share one budget (issue 14, "Tests").

Both run a batch of 8 APIFRAME imagines (4 credits each, 64 wanted) under the same session
budget of 40 credits a day, against one served sandbox: exactly 10 jobs are sent between them,
a read-only watcher of the history never sees spent + reserved pass 40, and the sandbox's
account went down by exactly 40. Raising the budget and running both batches again resumes them:
every row ends succeeded and no row is sent twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _kernels import REPO, Sandbox

KERNEL = Path(__file__).with_name("_budget_kernel.py")
PRICE, BUDGET, ROWS = 4, 40, 8
#: What the budget counts: recorded costs, plus open reservations of jobs with none yet.
USED = (
    "SELECT (SELECT COALESCE(SUM(cost), 0) FROM jobs WHERE provider = 'apiframe' "
    "AND cost_unit = 'credits') + (SELECT COALESCE(SUM(r.amount), 0) FROM reservations r "
    "LEFT JOIN jobs j ON j.id = r.job_id WHERE r.state = 'open' AND j.cost IS NULL)"
)


class Watcher(threading.Thread):
    """Reads the history file read-only every 10 ms; ``peak`` is the most it ever saw used."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.peak, self.reads, self.stop = path, 0.0, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1) as conn:
                    self.peak = max(self.peak, float(conn.execute(USED).fetchone()[0]))
                    self.reads += 1
            except sqlite3.Error:
                pass  # not created or migrated yet
            time.sleep(0.01)


def imagines_sent(sandbox: Sandbox) -> int:
    return sum(n for key, n in sandbox.requests().items() if key == "POST /apiframe/imagine")


def credits_left(sandbox: Sandbox) -> float:
    answer = httpx.get(sandbox.url + "/apiframe/account", timeout=10,
                       headers={"Authorization": "sandbox-key"})
    return float(answer.json()["credits"])


def run_kernels(tmp: Path, home: Path, sandbox: Sandbox, budget: float, tag: str) -> list[dict]:
    """Both kernels' batches under ``budget``, started together; their results."""
    go = tmp / f"go-{tag}"
    env = {**os.environ, "JUPYTER_IMAGINE_HOME": str(home),
           "JUPYTER_IMAGINE_SANDBOX_URL": sandbox.url,
           "JUPYTER_IMAGINE_SANDBOX_SPEED": str(sandbox.speed), "PYTHONPATH": str(REPO)}
    procs, outs = [], []
    for name in ("A", "B"):
        out = tmp / f"{name}-{tag}.json"
        spec = {"budget": {"apiframe": budget}, "name": f"batch-{name}", "concurrency": 3,
                "prompts": [f"{name} lighthouse {i}" for i in range(ROWS)], "go": str(go),
                "out": str(out)}
        path = tmp / f"{name}-{tag}.spec.json"
        path.write_text(json.dumps(spec))
        log = open(tmp / f"{name}-{tag}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, str(KERNEL), str(path)], cwd=REPO,
                                      env=env, stdout=log, stderr=log))
        log.close()
        outs.append(out)
    time.sleep(1.0)  # both imported and configured, waiting for the go
    go.touch()
    for proc, name in zip(procs, "AB", strict=True):
        assert proc.wait(120) == 0, (tmp / f"{name}-{tag}.log").read_text()[-2000:]
    return [json.loads(out.read_text()) for out in outs]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_kernels_share_one_budget_exactly_and_resume_when_it_is_raised(tmp_path):
    home = tmp_path / "home"
    with Sandbox(speed=40) as sandbox:
        start = credits_left(sandbox)
        watcher = Watcher(home / "history.sqlite")
        watcher.start()
        try:
            first = run_kernels(tmp_path, home, sandbox, BUDGET, "1")
        finally:
            watcher.stop.set()
            watcher.join(5)
        succeeded = sum(r["status"].count("succeeded") for r in first)
        left = sum(len(r["unsubmitted"]) for r in first)
        report = f"{first}; peak {watcher.peak} over {watcher.reads} reads"
        assert succeeded == BUDGET // PRICE == 10, report
        assert left == 2 * ROWS - 10, report
        assert imagines_sent(sandbox) == 10, report
        assert start - credits_left(sandbox) == BUDGET, report
        assert watcher.reads > 10 and watcher.peak <= BUDGET, report
        refusals = [e for r in first for e in r["errors"] if e]
        assert refusals and all(e.startswith("not sent:") and "40 credits per day" in e
                                for e in refusals), report

        again = run_kernels(tmp_path, home, sandbox, PRICE * 2 * ROWS, "2")
        assert [r["status"] for r in again] == [["succeeded"] * ROWS] * 2, again
        assert [r["unsubmitted"] for r in again] == [[], []], again
        assert imagines_sent(sandbox) == 2 * ROWS  # each row sent once, over both runs
        assert start - credits_left(sandbox) == PRICE * 2 * ROWS
