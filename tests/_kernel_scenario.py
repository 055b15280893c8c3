"""One "kernel" for the multi-process tests: ``python tests/_kernel_scenario.py SPEC.json``.

It plays a notebook kernel on a shared ``JUPYTER_IMAGINE_HOME`` (set, with
``JUPYTER_IMAGINE_SANDBOX_URL``, by the parent) using only the public API: it starts the jobs
listed in the spec (``ji.imagine``), re-attaches to the ids listed (``ji.job``), then watches its
jobs and the history (``ji.history``) until every job it knows and every stored row is final (or
the spec's deadline passes), checks that ``Job.wait`` returns, dumps the history and exits.

Everything it sees goes to the spec's ``log`` file as JSON lines written with one ``os.write``
on an ``O_APPEND`` descriptor, so a line is whole and survives ``SIGKILL``:

- ``http`` — every request this process sends (``phase`` ``send`` before it goes out,
  ``answer`` with the status code, or ``error`` with the exception type), with the prompt
  tokens and id-like words found in its path and body (the network boundary is instrumented by
  wrapping ``httpx.AsyncClient.send``; nothing of jupyter_imagine is patched);
- ``created`` / ``attached`` / ``create_error`` — the jobs this process started or re-attached;
- ``obs`` — a status seen on a held ``Job`` (``src`` ``job``) or in ``ji.history()`` (``store``);
- ``wait`` — what ``Job.wait`` did; ``final`` — the history at the end.

Spec keys: ``name``, ``log``, ``create`` (list of ``{provider, prompt, token, params}``),
``attach`` (list of job ids), ``deadline`` (seconds, default 60), ``store_every`` (seconds
between history reads, default 0.5).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from typing import Any

import httpx

FINAL = {"succeeded", "failed", "cancelled"}
TOKEN_RE = re.compile(rb"jt[0-9a-f]{10}")
WORD_RE = re.compile(rb"[A-Za-z0-9_-]{4,64}")


class Log:
    """Append-only JSON lines, one ``os.write`` per line."""

    def __init__(self, path: str, name: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.name = name
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def write(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"ev": ev, "k": self.name, "pid": self.pid, "t": time.time(), **fields},
                          default=str)
        with self.lock:
            os.write(self.fd, line.encode() + b"\n")


def _words(data: bytes) -> tuple[list[str], list[str]]:
    tokens = sorted({m.decode() for m in TOKEN_RE.findall(data)})
    words = sorted({m.decode() for m in WORD_RE.findall(data[:20000])})[:300]
    return tokens, words


def _ids(payload: Any, out: set[str]) -> set[str]:
    """Every value of a key ending in ``id``/``Id`` in a JSON payload (the remote ids)."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            if isinstance(value, (str, int)) and str(key).lower().endswith("id"):
                out.add(str(value))
            else:
                _ids(value, out)
    elif isinstance(payload, list):
        for value in payload[:50]:
            _ids(value, out)
    return out


def instrument(log: Log) -> None:
    """Log every request sent through any ``httpx.AsyncClient`` of this process."""
    original = httpx.AsyncClient.send
    counter = iter(range(1, 1 << 62))

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        rid = next(counter)
        try:
            body = await request.aread()
        except Exception:
            body = b""
        tokens, words = _words(request.url.path.encode() + b" " + body)
        base = {"rid": rid, "m": request.method, "path": request.url.path}
        log.write("http", phase="send", tokens=tokens, words=words, **base)
        try:
            response = await original(self, request, **kwargs)
        except BaseException as exc:
            log.write("http", phase="error", err=type(exc).__name__, **base)
            raise
        ids: list[str] = []
        if tokens and not kwargs.get("stream"):
            try:
                ids = sorted(_ids(response.json(), set()))
            except Exception:
                ids = []
        log.write("http", phase="answer", code=response.status_code, ids=ids, **base)
        return response

    httpx.AsyncClient.send = send  # type: ignore[method-assign]


def start_jobs(ji: Any, spec: dict[str, Any], log: Log) -> dict[str, Any]:
    """Create and attach the spec's jobs; returns the held jobs by id."""
    held: dict[str, Any] = {}
    for item in spec.get("create", []):
        try:
            job = ji.imagine(item["prompt"], provider=item["provider"], **item.get("params", {}))
        except Exception as exc:
            log.write("create_error", token=item["token"], provider=item["provider"],
                      err=f"{type(exc).__name__}: {exc}")
            continue
        held[job.id] = job
        log.write("created", id=job.id, token=item["token"], provider=item["provider"])
    for job_id in spec.get("attach", []):
        try:
            job = ji.job(job_id)
        except Exception as exc:
            log.write("attach_error", id=job_id, err=f"{type(exc).__name__}: {exc}")
            continue
        held[job.id] = job
        log.write("attached", id=job.id, status=job.status.value)
    return held


def _history_rows(ji: Any) -> list[dict[str, Any]]:
    frame = ji.history().reset_index()  # the frame is indexed by (provider, id)
    cols = [c for c in ("id", "provider", "status", "error", "error_type", "n_images",
                        "missing_images", "image_paths", "prompt", "remote_id")
            if c in frame.columns]
    rows = []
    for rec in frame[cols].to_dict("records"):
        rows.append({k: (None if _isna(v) else v) for k, v in rec.items()})
    return rows


def _isna(value: Any) -> bool:
    try:
        return bool(value != value) or value is None  # NaN / NA
    except (TypeError, ValueError):
        return False


def watch(ji: Any, held: dict[str, Any], log: Log, spec: dict[str, Any]) -> bool:
    """Log status changes until every job is final and every image is fetched; ``False`` if
    the deadline passed first."""
    deadline = time.time() + float(spec.get("deadline", 60))
    store_every = float(spec.get("store_every", 0.5))
    seen_job: dict[str, str] = {}
    seen_store: dict[str, str] = {}
    next_store = 0.0
    store_final = False
    while time.time() < deadline:
        for job_id, job in held.items():
            status = job.status.value
            if seen_job.get(job_id) != status:
                seen_job[job_id] = status
                log.write("obs", src="job", id=job_id, status=status)
        if time.time() >= next_store:
            next_store = time.time() + store_every
            rows = _history_rows(ji)
            for row in rows:
                if seen_store.get(row["id"]) != row["status"]:
                    seen_store[row["id"]] = row["status"]
                    log.write("obs", src="store", id=row["id"], status=row["status"])
            # Settled means every job final and every image fetched: a download that failed is
            # retried in the background, and a user's kernel would still be running.
            store_final = all(row["status"] in FINAL and not row.get("missing_images")
                              for row in rows)
        if store_final and all(s in FINAL for s in seen_job.values()) and \
                len(seen_job) == len(held):
            return True
        time.sleep(0.05)
    return False


def check_waits(held: dict[str, Any], log: Log) -> None:
    """``Job.wait`` on every held job must return or raise at once once it is final."""
    for job_id, job in held.items():
        before = job.status.value
        started = time.time()
        try:
            job.wait(timeout=5)
            outcome = "returned"
        except Exception as exc:
            outcome = type(exc).__name__
        log.write("wait", id=job_id, outcome=outcome, seconds=time.time() - started,
                  before=before, status=job.status.value, error=job.error)


def main(path: str) -> None:
    with open(path) as fh:
        spec = json.load(fh)
    log = Log(spec["log"], spec["name"])
    log.write("start")
    instrument(log)
    import jupyter_imagine as ji

    held = start_jobs(ji, spec, log)
    log.write("started_all", n=len(held))
    done = watch(ji, held, log, spec)
    log.write("settled" if done else "deadline")
    check_waits(held, log)
    try:
        log.write("final", rows=_history_rows(ji))
    except Exception as exc:
        log.write("final_error", err=f"{type(exc).__name__}: {exc}")
    log.write("exit")
    os._exit(0)  # the engine's thread is a daemon; skip interpreter teardown


if __name__ == "__main__":
    main(sys.argv[1])
