"""Real-process harness for "many kernels, one history" (issue 10): sandbox, kernels, facts.

- :class:`Sandbox` — ``python -m jupyter_imagine.sandbox`` on a free loopback port, in its own
  process group, with helpers for the ``/_sandbox/requests`` and ``/_sandbox/faults`` routes.
- :class:`Kernel` — one ``tests/_kernel_scenario.py`` subprocess (its own process group) on a
  shared home; :meth:`Kernel.kill` is ``SIGKILL`` to the group.
- :class:`StoreWatcher` — a thread reading the history's SQLite file read-only every 0.1 s, so
  a stored status that leaves a final state is seen even if no kernel looks at that moment.
- :func:`facts` — from the kernels' logs, the watcher and the store at the end: jobs terminal,
  succeeded/failed, duplicate submits, regressions, live jobs taken over, lost jobs, missing images.

Only public behaviour is relied on: the kernels use ``imagine``/``job``/``history``/``Job``,
the harness reads the sandbox's control routes and the SQLite file (read-only).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SCENARIO = Path(__file__).with_name("_kernel_scenario.py")
REPO = Path(__file__).resolve().parent.parent
FINAL = frozenset({"succeeded", "failed", "cancelled"})
PROVIDERS = ("apiframe", "thenextleg", "blockade", "neuroflash", "banatie")
#: The reason a job whose submit was cut off must give (issue 10, "honest messages").
MAY_HAVE_REACHED = re.compile(r"may (or may not )?have reached", re.I)
#: Lease of every kernel: a dead one's jobs are taken over this long after its last heartbeat.
LEASE_SECONDS = 4.0
_DOWNLOAD = re.compile(r"(/cdn/|-cdn/|/content$|/attachments/|/getImage)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``proc`` (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Terminate ``proc``'s group, then kill it if it does not exit within ``grace`` seconds."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


class Sandbox:
    """A served sandbox; use as a context manager (the server always stops).

    Args:
        speed: the sandbox clock speed (default 40: an APIFRAME imagine takes ~1 s).
        log: where the server's output goes (default: discarded).
        drawing: ``quick`` (default) or ``full``. These tests count jobs, submits and leases,
            never pixels; with the full landscapes the sandbox used about 72 s of CPU in a 47 s
            kill -9 scenario on two cores, starving the kernels it tests and the other worker.
    """

    def __init__(self, speed: float = 40.0, log: Path | None = None,
                 drawing: str = "quick") -> None:
        self.speed = speed
        self.drawing = drawing
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sandbox:
        out = open(self._log, "ab") if self._log else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_imagine.sandbox", "--host", "127.0.0.1",
             "--port", str(self.port), "--speed", str(self.speed), "--drawing", self.drawing,
             "--log-level", "warning"],
            stdout=out, stderr=out, cwd=REPO, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the sandbox server exited ({self._proc.returncode})")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the sandbox server did not start within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            _reap(self._proc)

    def requests(self) -> dict[str, int]:
        """``"METHOD /path"`` → requests received (``GET /_sandbox/requests``)."""
        return dict(httpx.get(self.url + "/_sandbox/requests", timeout=10).json()["requests"])

    def add_fault(self, **spec: Any) -> httpx.Response:
        """``POST /_sandbox/faults`` with ``spec`` (``path``, ``kind``, ``status``, ``count`` …)."""
        return httpx.post(self.url + "/_sandbox/faults", json=spec, timeout=10)

    def pending_faults(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/_sandbox/faults", timeout=10).json()["faults"])

    def clear_faults(self) -> None:
        httpx.delete(self.url + "/_sandbox/faults", timeout=10)


def token() -> str:
    """A unique prompt token (``jt`` + 10 hex digits) that marks one job in every log."""
    return "jt" + secrets.token_hex(5)


def job_specs(counts: dict[str, int], words: str = "a lighthouse at dusk") -> list[dict[str, Any]]:
    """Jobs to start: ``counts[provider]`` of each, every prompt with its own token."""
    specs = []
    for provider, n in counts.items():
        for _ in range(n):
            tok = token()
            specs.append({"provider": provider, "prompt": f"{tok} {words}", "token": tok,
                          "params": {}})
    return specs


@dataclass
class Kernel:
    """One kernel process on ``home`` against ``sandbox``; ``name`` is shared by its restarts."""

    name: str
    home: Path
    sandbox: Sandbox
    workdir: Path
    incarnation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ended_at: dict[str, float] = field(default_factory=dict)
    #: More environment for every incarnation (the team store's URL …).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid_name(self) -> str:
        return f"{self.name}#{self.incarnation}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.{self.incarnation}.jsonl"

    def start(self, create: Iterable[dict[str, Any]] = (), attach: Iterable[str] = (),
              deadline: float = 60.0) -> Kernel:
        """Start a new incarnation running the scenario (its own session and process group)."""
        self.incarnation += 1
        spec = {"name": self.pid_name, "log": str(self.log_path), "create": list(create),
                "attach": list(attach), "deadline": deadline}
        spec_path = self.workdir / f"{self.pid_name}.spec.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "JUPYTER_IMAGINE_HOME": str(self.home),
               "JUPYTER_IMAGINE_SANDBOX_URL": self.sandbox.url,
               "JUPYTER_IMAGINE_SANDBOX_SPEED": str(self.sandbox.speed),
               "JUPYTER_IMAGINE_LEASE_SECONDS": str(LEASE_SECONDS),
               "PYTHONPATH": str(REPO)}
        for key in [k for k in env if k.endswith(("_API_KEY", "_BASE_URL"))]:
            env.pop(key)
        env.update(self.env)
        err = open(self.workdir / f"{self.pid_name}.stderr", "wb")
        self.proc = subprocess.Popen([sys.executable, str(SCENARIO), str(spec_path)], cwd=REPO,
                                     env=env, stdout=err, stderr=err, start_new_session=True)
        err.close()
        return self

    def events(self) -> list[dict[str, Any]]:
        """This incarnation's log so far (a torn last line is skipped)."""
        return read_log(self.log_path)

    def kill(self) -> None:
        """``SIGKILL`` to the whole process group, now."""
        assert self.proc is not None
        _kill_group(self.proc)
        self.proc.wait(60)
        self.ended_at[self.pid_name] = time.time()

    def wait(self, timeout: float) -> bool:
        """Wait for this incarnation to exit; ``False`` (and killed) after ``timeout`` s."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
            ok = True
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            self.proc.wait(60)
            ok = False
        self.ended_at.setdefault(self.pid_name, time.time())
        return ok

    def stop(self) -> None:
        """Make sure no process of this kernel is left (for ``finally``)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.ended_at.setdefault(self.pid_name, time.time())
            _reap(self.proc, grace=1.0)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def wait_for(predicate: Any, timeout: float, step: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def submits_seen(events: list[dict[str, Any]]) -> tuple[int, int]:
    """``(sent, answered)`` submit requests (POSTs carrying a prompt token) in a kernel's log."""
    sent = {e["rid"] for e in events
            if e.get("ev") == "http" and e["phase"] == "send" and e["m"] == "POST" and e["tokens"]}
    answered = {e["rid"] for e in events
                if e.get("ev") == "http" and e["phase"] != "send" and e["rid"] in sent}
    return len(sent), len(answered)


class StoreWatcher(threading.Thread):
    """Reads ``id, status`` of every row of ``home``'s history read-only every ``every`` s."""

    def __init__(self, home: Path, every: float = 0.1) -> None:
        super().__init__(name="store-watcher", daemon=True)
        self.db = home / "history.sqlite"
        self.every = every
        self.observations: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()
        self._stop_event = threading.Event()

    def run(self) -> None:
        seen: dict[str, str] = {}
        while not self._stop_event.is_set():
            for job_id, status in self.snapshot():
                if seen.get(job_id) != status:
                    seen[job_id] = status
                    self.observations.append({"ev": "obs", "k": "watcher", "src": "sqlite",
                                              "t": time.time(), "id": job_id, "status": status})
            self._stop_event.wait(self.every)

    def snapshot(self) -> list[tuple[str, str]]:
        return [(r["id"], r["status"]) for r in self.rows(("id", "status"))]

    def rows(self, wanted: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The rows (only the ``wanted`` columns that exist; all if empty); ``[]`` on error."""
        if not self.db.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
            try:
                conn.row_factory = sqlite3.Row
                cols = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
                pick = [c for c in wanted if c in cols] if wanted else cols
                if not pick:  # no table yet: the first kernel is still creating it
                    return []
                rows = conn.execute(f"SELECT {', '.join(pick)} FROM jobs").fetchall()
                return [dict(r) for r in rows]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self.errors[type(exc).__name__ + ": " + str(exc)] += 1
            return []

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


class TeamStoreWatcher(StoreWatcher):
    """:class:`StoreWatcher` of the team store at a ``postgresql://`` URL."""

    def __init__(self, url: str, every: float = 0.1) -> None:
        super().__init__(Path("/nonexistent"), every)
        self.url = url

    def rows(self, wanted: Iterable[str] = ()) -> list[dict[str, Any]]:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=5) as conn:
                cols = [r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'jobs'").fetchall()]
                pick = [c for c in wanted if c in cols] if wanted else cols
                if not pick:
                    return []
                cursor = conn.execute(f"SELECT {', '.join(pick)} FROM jobs")
                return [dict(zip(pick, row, strict=True)) for row in cursor.fetchall()]
        except psycopg.Error as exc:
            self.errors[type(exc).__name__ + ": " + str(exc).splitlines()[0]] += 1
            return []


@contextlib.contextmanager
def kernels(home: Path, sandbox: Sandbox, workdir: Path, names: Iterable[str],
            team_store: str | None = None) -> Iterator[dict[str, Kernel]]:
    """Kernels by name, all stopped (process groups killed) on the way out. With
    ``team_store`` (a ``postgresql://`` URL) each kernel has its own home (another machine)
    and they share that store and one image folder, ``home / "shared-images"``."""
    made = {}
    for name in names:
        if team_store is None:
            made[name] = Kernel(name, home, sandbox, workdir)
        else:
            made[name] = Kernel(name, home / name, sandbox, workdir,
                                env={"JUPYTER_IMAGINE_STORE": team_store,
                                     "JUPYTER_IMAGINE_IMAGES": str(home / "shared-images")})
    try:
        yield made
    finally:
        for kernel in made.values():
            kernel.stop()


# ====================================================================== facts
@dataclass
class Facts:
    """What one run proved. Counts are of jobs unless named otherwise."""

    total: int = 0
    terminal: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    may_have_reached: int = 0
    failed_after_accept: int = 0
    duplicate_submits: int = 0
    extra_submits: int = 0
    regressions: int = 0
    conflicting_finals: int = 0
    live_taken_over: int = 0
    resumed_after_death: int = 0
    lost: int = 0
    missing_images: int = 0
    jobs_missing_images: int = 0
    waits_not_returned: int = 0  # Job.wait() on a final job that did not return at once
    crashes: int = 0  # incarnations that died of an exception (not of the planned SIGKILL)
    failure_reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    def example(self, kind: str, text: str) -> None:
        if len(self.examples[kind]) < 3:
            self.examples[kind].append(text)

    def line(self) -> str:
        return (f"terminal {self.terminal}/{self.total}  succeeded {self.succeeded}  failed "
                f"{self.failed} (may-have-reached {self.may_have_reached}, after the provider "
                f"accepted {self.failed_after_accept})  duplicate submits "
                f"{self.duplicate_submits} (+{self.extra_submits} extra)  regressions "
                f"{self.regressions}  conflicting finals {self.conflicting_finals}  live jobs "
                f"taken over {self.live_taken_over}  lost {self.lost}  missing images "
                f"{self.missing_images} in {self.jobs_missing_images} jobs  crashes "
                f"{self.crashes}")

    def report(self) -> str:
        parts = [self.line()]
        if self.failure_reasons:
            parts.append("failure reasons: " + "; ".join(
                f"{n}× {r}" for r, n in self.failure_reasons.most_common(6)))
        for kind, texts in self.examples.items():
            parts.append(f"{kind}: " + " | ".join(texts))
        parts.extend(self.notes)
        return "\n".join(parts)


@dataclass
class _Job:
    """What the logs say about one job."""

    id: str
    token: str | None = None
    provider: str | None = None
    creator: str | None = None
    remote_ids: set[str] = field(default_factory=set)
    accepted: bool = False
    status: str | None = None
    error: str = ""


def facts(kernel_list: Iterable[Kernel], watcher: StoreWatcher) -> Facts:
    """Everything :class:`Facts` holds, from every incarnation's log, the watcher and the store."""
    ks = list(kernel_list)
    logs = {f"{k.name}#{i}": read_log(k.workdir / f"{k.name}.{i}.jsonl")
            for k in ks for i in range(1, k.incarnation + 1)}
    ended = {name: t for k in ks for name, t in k.ended_at.items()}
    rows = _final_rows(watcher, logs)
    jobs = _jobs(logs, rows)
    out = Facts(total=len(jobs))
    _count_outcomes(out, jobs, rows)
    http = [e for name in logs for e in logs[name] if e.get("ev") == "http"]
    _count_submits(out, jobs, http)
    _count_takeovers(out, jobs, http, ended)
    obs = [e for events in logs.values() for e in events if e.get("ev") == "obs"]
    _count_regressions(out, obs + watcher.observations)
    out.waits_not_returned = sum(  # on a job already final, wait() must return at once
        1 for events in logs.values() for e in events
        if e.get("ev") == "wait" and e.get("before") in FINAL
        and (e["seconds"] > 1.0 or e["outcome"] == "JobTimeout"))
    if watcher.errors:
        out.notes.append(f"store reads that failed: {dict(watcher.errors)}")
    _count_crashes(out, ks)
    return out


def _count_crashes(out: Facts, ks: list[Kernel]) -> None:
    """A kernel process that ended in a traceback is a defect of its own: count it and quote
    its last line, so a harness or product crash is never reported only as "lost" jobs."""
    for k in ks:
        for i in range(1, k.incarnation + 1):
            path = k.workdir / f"{k.name}#{i}.stderr"
            text = path.read_text(errors="replace") if path.exists() else ""
            if "Traceback (most recent call last)" in text:
                out.crashes += 1
                last = text.strip().splitlines()[-1]
                out.notes.append(f"{k.name}#{i} crashed: {last} (see {path})")


def _final_rows(watcher: StoreWatcher, logs: dict[str, list[dict[str, Any]]]) -> dict[str, dict]:
    """The stored rows at the end: the SQLite file, else the last ``ji.history()`` dump."""
    rows = watcher.rows(("id", "provider", "status", "error", "error_type", "n_images", "paths",
                         "prompt", "remote_id"))
    if rows:
        for row in rows:
            row["image_paths"] = json.loads(row.pop("paths", None) or "[]")
        return {row["id"]: row for row in rows}
    dumps = [e for events in logs.values() for e in events if e.get("ev") == "final"]
    dumps.sort(key=lambda e: e["t"])
    return {row["id"]: row for row in (dumps[-1]["rows"] if dumps else [])}


def _jobs(logs: dict[str, list[dict[str, Any]]], rows: dict[str, dict]) -> dict[str, _Job]:
    """Every job of the run: created in a log or stored with a token in its prompt."""
    jobs: dict[str, _Job] = {}
    for name, events in logs.items():
        for e in events:
            if e.get("ev") == "created":
                jobs[e["id"]] = _Job(e["id"], e["token"], e["provider"], name)
    for row in rows.values():
        found = re.search(r"jt[0-9a-f]{10}", row.get("prompt") or "")
        job = jobs.setdefault(row["id"], _Job(row["id"], found.group(0) if found else None,
                                              row.get("provider")))
        if row.get("remote_id"):
            job.remote_ids.add(str(row["remote_id"]))
    return jobs


def _count_outcomes(out: Facts, jobs: dict[str, _Job], rows: dict[str, dict]) -> None:
    for job_id in jobs:
        row = rows.get(job_id)
        if row is None:
            out.lost += 1
            out.example("lost", f"{job_id} (not in the store)")
            continue
        status = row["status"]
        if status not in FINAL:
            out.lost += 1
            out.example("lost", f"{job_id} ({row.get('provider')}, still {status})")
            continue
        out.terminal += 1
        jobs[job_id].status, jobs[job_id].error = status, str(row.get("error") or "")
        setattr(out, status, getattr(out, status) + 1)
        if status == "failed":
            error = str(row.get("error") or "")
            if MAY_HAVE_REACHED.search(error):
                out.may_have_reached += 1
            out.failure_reasons[f"{row.get('provider')}: {error[:90]}"] += 1
        if status == "succeeded":
            paths = [p for p in (row.get("image_paths") or []) if p]
            present = sum(1 for p in paths if Path(p).exists())
            missing = max(int(row.get("n_images") or 0), len(paths)) - present
            if missing:
                out.missing_images += missing
                out.jobs_missing_images += 1
                out.example("missing images", f"{job_id} ({row.get('provider')}): {missing}")


def _provider_of(path: str) -> str:
    return path.strip("/").split("/", 1)[0].removesuffix("-cdn").removesuffix("-id")


def _count_submits(out: Facts, jobs: dict[str, _Job], http: list[dict[str, Any]]) -> None:
    """Submits per job that may have created a task: answered 2xx, or never answered."""
    by_token = {j.token: j for j in jobs.values() if j.token}
    sends = {(e["k"], e["rid"]): e for e in http
             if e["phase"] == "send" and e["m"] == "POST" and e["tokens"]}
    endings = {(e["k"], e["rid"]): e for e in http if e["phase"] != "send"}
    may_have_created: Counter[str] = Counter()
    for key, send in sends.items():
        end = endings.get(key)
        job = next((by_token[t] for t in send["tokens"] if t in by_token), None)
        if job is None:
            continue
        if end is None or (end["phase"] == "error" and end["err"] != "ConnectError"):
            may_have_created[job.id] += 1
        elif end["phase"] == "answer" and 200 <= end["code"] < 300:
            may_have_created[job.id] += 1
            # an id the request itself named (neuroflash's workspace in every path) is not
            # the new job's
            job.remote_ids.update(set(end.get("ids") or []) - set(send["words"]))
            job.accepted = True
    for job in jobs.values():
        if job.accepted and job.status == "failed" and not MAY_HAVE_REACHED.search(job.error):
            out.failed_after_accept += 1  # the sandbox never fails a job on its own
            out.example("failed after the provider accepted", f"{job.id} ({job.provider}): "
                                                               f"{job.error[:80]}")
    for job_id, n in may_have_created.items():
        if n > 1:
            out.duplicate_submits += 1
            out.extra_submits += n - 1
            out.example("duplicate submits", f"{job_id} ({jobs[job_id].provider}) ×{n}")


def _touches(http: list[dict[str, Any]], jobs: dict[str, _Job]) -> list[tuple[float, str, str]]:
    """``(time, process, job id)`` for every submit or poll request that names a job."""
    by_token = {j.token: j.id for j in jobs.values() if j.token}
    by_remote: dict[tuple[str, str], str] = {}
    for job in jobs.values():
        for rid in job.remote_ids:
            by_remote[(job.provider or "", rid)] = job.id
    out = []
    for e in http:
        if e["phase"] != "send" or _DOWNLOAD.search(e["path"]):
            continue
        provider = _provider_of(e["path"])
        named = {by_token[t] for t in e["tokens"] if t in by_token}
        named |= {by_remote[(provider, w)] for w in e["words"] if (provider, w) in by_remote}
        out.extend((e["t"], e["k"], job_id) for job_id in named)
    return sorted(out)


def _count_takeovers(out: Facts, jobs: dict[str, _Job], http: list[dict[str, Any]],
                     ended: dict[str, float]) -> None:
    """A process that submits/polls a job whose current owner is alive takes a live job over.

    The owner is the creator; ownership passes to another process only after the owner died.
    """
    owner = {j.id: j.creator for j in jobs.values()}
    taken: set[str] = set()
    passed: set[str] = set()
    for t, proc, job_id in _touches(http, jobs):
        current = owner.get(job_id)
        if current is None:
            owner[job_id] = proc
        elif current != proc:
            if t >= ended.get(current, float("inf")):
                owner[job_id] = proc
                passed.add(job_id)
            elif job_id not in taken:
                taken.add(job_id)
                out.example("live jobs taken over", f"{job_id} ({jobs[job_id].provider}): "
                                                    f"{proc} while {current} was alive")
    out.live_taken_over = len(taken)
    out.resumed_after_death = len(passed)


def _count_regressions(out: Facts, observations: list[dict[str, Any]]) -> None:
    """Per observer stream, a status after a final one is a regression; across streams, two
    different final statuses for one job are conflicting finals."""
    streams: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    finals: dict[str, set[str]] = defaultdict(set)
    for o in observations:
        streams[(o["k"], o["src"], o["id"])].append(o)
        if o["status"] in FINAL:
            finals[o["id"]].add(o["status"])
    regressed: set[str] = set()
    for (proc, src, job_id), seq in streams.items():
        seq.sort(key=lambda o: o["t"])
        first_final = next((o["status"] for o in seq if o["status"] in FINAL), None)
        if first_final is None:
            continue
        after = [o["status"] for o in seq[[o["status"] for o in seq].index(first_final):]]
        if any(s != first_final for s in after) and job_id not in regressed:
            regressed.add(job_id)
            out.example("regressions", f"{job_id} in {proc}/{src}: {' → '.join(after)}")
    out.regressions = len(regressed)
    conflicting = [j for j, s in finals.items() if len(s) > 1]
    out.conflicting_finals = len(conflicting)
    for job_id in conflicting[:3]:
        out.example("conflicting finals", f"{job_id}: {sorted(finals[job_id])}")


# ====================================================================== one run
@dataclass
class Plan:
    """One run: the jobs each kernel starts, and which kernel is killed when.

    Attributes:
        jobs: kernel name → the jobs it starts (see :func:`job_specs`).
        kill: the kernel to ``SIGKILL`` and restart (default ``None``: none).
        kill_when: called with the victim's log events, kill once it returns true (default:
            once all its jobs are created and one of its submits was answered).
        deadline: seconds each kernel waits for everything to be final (default 45).
    """

    jobs: dict[str, list[dict[str, Any]]]
    kill: str | None = None
    kill_when: Any = None
    deadline: float = 45.0
    #: A ``postgresql://`` URL: the kernels are machines (a home each) on that team store.
    team_store: str | None = None


def _created_all(events: list[dict[str, Any]]) -> bool:
    return any(e.get("ev") == "started_all" for e in events)


def default_kill_when(events: list[dict[str, Any]]) -> bool:
    return _created_all(events) and submits_seen(events)[1] >= 1


def run(plan: Plan, sandbox: Sandbox, workdir: Path, on_tick: Any = None) -> tuple[Facts, dict]:
    """Run ``plan`` on one fresh home; returns the facts and timings (``kill_at``, ``wall``).

    ``on_tick()`` (default ``None``) is called about every 0.1 s while kernels run (the soak
    injects faults from it). Every process is gone when this returns or raises.
    """
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    watcher = StoreWatcher(home) if plan.team_store is None else TeamStoreWatcher(plan.team_store)
    watcher.start()
    started = time.time()
    info: dict[str, Any] = {}
    try:
        with kernels(home, sandbox, workdir, plan.jobs, plan.team_store) as ks:
            for name, specs in plan.jobs.items():
                ks[name].start(create=specs, deadline=plan.deadline)
            if plan.kill is not None:
                info.update(_kill_and_restart(ks[plan.kill], plan, on_tick))
            _wait_all(ks.values(), plan.deadline + 30, on_tick)
            info["wall"] = time.time() - started
            watcher.stop()
            got = facts(ks.values(), watcher)
            info.update(submit_requests(ks.values(), sandbox))
            (workdir / "run.json").write_text(json.dumps({
                "kernels": {k.name: k.incarnation for k in ks.values()},
                "ended_at": {n: t for k in ks.values() for n, t in k.ended_at.items()},
                "info": info}))
            return got, info
    finally:
        watcher.stop()


def submit_requests(ks: Iterable[Kernel], sandbox: Sandbox) -> dict[str, int]:
    """Submit requests as the kernels sent them and as the sandbox counted them (a cross-check
    of the duplicate count that needs no per-task log on the sandbox's side)."""
    sent: Counter[str] = Counter()
    for kernel in ks:
        for i in range(1, kernel.incarnation + 1):
            for e in read_log(kernel.workdir / f"{kernel.name}.{i}.jsonl"):
                if e.get("ev") == "http" and e["phase"] == "send" and e["m"] == "POST" \
                        and e["tokens"]:
                    sent[e["path"]] += 1
    counted = sandbox.requests()
    return {"client_submit_requests": sum(sent.values()),
            "server_submit_requests": sum(counted.get(f"POST {p}", 0) for p in sent)}


def facts_from_dir(workdir: Path) -> Facts:
    """The facts of a finished :func:`run` again, from its ``workdir`` (logs, ``run.json``,
    the home), e.g. after changing a counter: ``python -c "...facts_from_dir(Path(d))..."``."""
    saved = json.loads((workdir / "run.json").read_text())
    ks = []
    for name, incarnations in saved["kernels"].items():
        kernel = Kernel(name, workdir / "home", None, workdir, incarnation=incarnations)  # type: ignore[arg-type]
        kernel.ended_at.update({n: t for n, t in saved["ended_at"].items()
                                if n.split("#")[0] == name})
        ks.append(kernel)
    return facts(ks, StoreWatcher(workdir / "home"))


def _kill_and_restart(victim: Kernel, plan: Plan, on_tick: Any) -> dict[str, Any]:
    when = plan.kill_when or default_kill_when
    t0 = time.time()
    while not when(victim.events()):
        if victim.proc is not None and victim.proc.poll() is not None:
            break  # it finished before the moment came: restart it anyway
        if time.time() - t0 > plan.deadline:
            break
        if on_tick is not None:
            on_tick()
        time.sleep(0.01)
    events = victim.events()
    sent, answered = submits_seen(events)
    victim.kill()
    created = [e["id"] for e in events if e.get("ev") == "created"]
    victim.start(attach=created, deadline=plan.deadline)
    return {"kill_at": time.time() - t0, "submits_sent_at_kill": sent,
            "submits_answered_at_kill": answered, "created_at_kill": len(created)}


def _wait_all(ks: Iterable[Kernel], timeout: float, on_tick: Any) -> None:
    deadline = time.time() + timeout
    pending = [k for k in ks if k.proc is not None]
    while pending and time.time() < deadline:
        for kernel in list(pending):
            assert kernel.proc is not None
            if kernel.proc.poll() is not None:
                kernel.ended_at.setdefault(kernel.pid_name, time.time())
                pending.remove(kernel)
        if on_tick is not None:
            on_tick()
        time.sleep(0.1)
    for kernel in pending:
        kernel.wait(0)
