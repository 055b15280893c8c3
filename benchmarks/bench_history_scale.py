"""How ``history()`` grows with the history: 10k, 100k, 300k and 1M stored jobs, time and memory.

The store gets 10,000 realistic jobs of all five providers (``bench_history_frame.make_records``,
saved through ``Store._bulk_save``); larger histories are copies of them made by SQLite itself
(``INSERT … SELECT`` in one transaction, each copy with new ids, remote ids and a later year, so
the table stays in time order). Each size is measured in a fresh subprocess, so its memory is
its own: ``history()`` best of ``--repeat`` runs, and its memory as the process's anonymous
resident memory (``RssAnon``: the heap, numpy's and SQLite's buffers, which tracemalloc would
miss) over the process after imports: the peak while it runs (sampled every 5 ms by a thread) and
what the frame keeps once built. The database file SQLite maps (``mmap_size``) is counted apart:
those are page-cache pages, shared and given back under pressure, and counting them (``VmHWM``)
made the frame look 2–3× bigger than it is. Elsewhere than Linux: ``ru_maxrss`` growth. Beside
it, in another fresh subprocess,
``pandas.json_normalize`` over as many records already in memory (copies of the 10,000 with new
ids; the records themselves are not counted in its memory).

Run: ``python benchmarks/bench_history_scale.py [--sizes 10000,100000,300000,1000000]
[--repeat 3]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BASE = 10_000
HERE = Path(__file__).resolve().parent


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class _AnonPeak:
    """The peak of ``RssAnon`` (MiB) while the ``with`` block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self.peak = _status_mib("RssAnon") or 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_mib("RssAnon") or 0.0)

    def __enter__(self) -> _AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_mib("RssAnon") or 0.0)


def _reset_peak() -> float:
    """Reset the peak RSS where Linux allows it; returns the RSS now (MiB)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _status_mib("VmRSS")
    return now if now is not None else _peak_mib()


def _peak_mib() -> float:
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _copy_sql(conn: sqlite3.Connection, copy: int) -> str:
    """``INSERT … SELECT`` of the base rows as copy ``copy`` (new keys, ``copy`` years later)."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
    suffix = f"'~{copy}'"
    year = f"printf('%04d', CAST(substr({{c}}, 1, 4) AS INTEGER) + {copy}) || substr({{c}}, 5)"
    changed = {
        name: f"{name} || {suffix}" for name in ("id", "remote_id", "parent_id", "root_id",
                                                  "batch_id")
    }
    for name in ("created_at", "started_at", "completed_at", "updated_at"):
        changed[name] = year.format(c=name)  # NULL stays NULL
    values = ", ".join(changed.get(name, name) for name in columns)
    return (f"INSERT INTO jobs ({', '.join(columns)}) SELECT {values} FROM jobs "
            f"WHERE rowid <= {BASE} ORDER BY rowid")


def grow(path: Path, target: int, have: int) -> int:
    """Copy the base rows until the table holds ``target`` jobs (one transaction)."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN IMMEDIATE")
        while have < target:
            conn.execute(_copy_sql(conn, have // BASE))
            have += BASE
        conn.execute("COMMIT")
    return have


def child(home: str, n: int, what: str, repeat: int) -> dict[str, float]:
    """Measured in this (fresh) process: ``history()`` (``what="frame"``) or json_normalize."""
    import pandas as pd

    from jupyter_imagine.store import Store

    samples = []
    memory: dict[str, float] = {}
    if what == "frame":
        with Store(home) as store:
            store.frame(limit=10)  # imports and the page cache
            base_rss = _reset_peak()
            base_anon = _status_mib("RssAnon")
            for k in range(repeat):
                gc.collect()
                with _AnonPeak() as peak:
                    t0 = time.perf_counter()
                    frame = store.frame()
                    samples.append(time.perf_counter() - t0)
                assert len(frame) == n, len(frame)
                if k == 0 and base_anon is not None:  # the first call: nothing freed to reuse
                    memory = {"anon_peak_mib": peak.peak - base_anon,
                              "anon_kept_mib": (_status_mib("RssAnon") or 0.0) - base_anon,
                              "file_mib": _status_mib("RssFile") or 0.0}
                del frame
            memory["again"] = _again(store, home, repeat)
    else:
        base = pickle.loads((Path(home) / "base.pickle").read_bytes())
        records = [dict(r, id=f"{r['id']}~{k}") for k in range(n // BASE) for r in base]
        base_rss = _reset_peak()  # the records themselves not counted
        for _ in range(repeat):
            gc.collect()
            t0 = time.perf_counter()
            flat = pd.json_normalize(records)
            samples.append(time.perf_counter() - t0)
            del flat
    return {"best": min(samples), "median": statistics.median(samples),
            "rss_mib": _peak_mib() - base_rss, "load": os.getloadavg()[0], **memory}


def _again(store: Any, home: str, repeat: int) -> float:
    """Best seconds of ``history()`` again while the frame before is alive, each time after
    another store saved one new job (one block read, the others reused)."""
    from bench_history_frame import timed_kept

    from jupyter_imagine.models import Job
    from jupyter_imagine.store import Store

    added = [Job(provider="apiframe", kind="imagine", prompt=f"again {k}") for k in range(repeat)]
    with Store(home) as other:
        best, _ = timed_kept(store, lambda k: other.save(added[k].to_record()), repeat)
        for job in added:  # the next size starts from the base rows' copies only
            other.delete(job.id)
    return best


def _measure(home: str, n: int, what: str, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run(
        [sys.executable, __file__, "--child", home, str(n), what, "--repeat", str(repeat)],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        home, n, what = args.child
        print(json.dumps(child(home, int(n), what, args.repeat)))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # this checkout's package, not an installed one
    from bench_history_frame import make_records

    from jupyter_imagine.store import Store

    print(f"history() by size ({args.repeat} runs each, best), each in a fresh process; memory "
          "in MiB over the process after imports: history()'s anonymous peak and what its frame "
          "keeps, the database file mapped (page cache, apart), json_normalize's peak RSS")
    print("'again': history() once more while the last frame is alive, after another store "
          "saved one job (only that block is read)")
    print(f"{'jobs':>9}  {'history()':>10}  {'µs/job':>7}  {'again':>7}  {'peak':>6}  {'kept':>6}  "
          f"{'file':>6}  {'json_normalize':>14}  {'µs/job':>7}  {'peak':>6}  {'ratio':>5}  load")
    with tempfile.TemporaryDirectory(prefix="ji-scale-") as home:
        t0 = time.perf_counter()
        records = make_records(BASE)
        with Store(home) as store:
            store._bulk_save(records)
            path = store.path
        (Path(home) / "base.pickle").write_bytes(pickle.dumps(records))
        have, made = BASE, time.perf_counter() - t0
        for n in sizes:
            t0 = time.perf_counter()
            have = grow(path, n, have)
            made += time.perf_counter() - t0
            f = _measure(home, n, "frame", args.repeat)
            j = _measure(home, n, "normalize", max(1, args.repeat - 1))
            peak, kept = f.get("anon_peak_mib", f["rss_mib"]), f.get("anon_kept_mib", -1)
            print(f"{n:>9,}  {f['best']:>8.3f} s  {f['best'] / n * 1e6:>7.2f}  "
                  f"{f.get('again', -1):>5.3f} s  {peak:>6.0f}  "
                  f"{kept:>6.0f}  {f.get('file_mib', -1):>6.0f}  {j['best']:>12.3f} s  "
                  f"{j['best'] / n * 1e6:>7.2f}  {j['rss_mib']:>6.0f}  "
                  f"{f['best'] / j['best']:>5.2f}  "
                  f"{(f['load'] + j['load']) / 2:.1f}", flush=True)
    print(f"(filling the store took {made:.1f} s in all)")


if __name__ == "__main__":
    main()
