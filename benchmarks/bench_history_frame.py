"""100,000 stored jobs → the history DataFrame (goal ≤ 0.25 s, ≤ 0.25× ``json_normalize``).

The store is filled with 100,000 realistic job records of all five providers (grids of four
images, skyboxes with thumbnails and depth maps, failures, children with a parent, parameters and
raw payloads) through ``Store._bulk_save``. Then, each timed several times (best and median):

* ``Store.frame()`` — what ``jupyter_imagine.history()`` returns: one SQL query over the indexed
  columns, every column of the unified schema with its dtype. First read whole (the frame before
  is dropped each time, so nothing is kept), then again while the last frame lives: with nothing
  changed, and after another store saved 100 new jobs and finished 100 (only the changed blocks
  are read: ``jupyter_imagine/store/_frame_cache.py``);
* what the change journal those reads need costs a write: ``Store.save()`` of new jobs and of
  updates, with the journal's triggers and without them (dropped in the same run);
* ``pandas.json_normalize`` over the same records, already in memory (the floor of "just
  flatten the JSON": object columns, no dtypes, no NA handling, nested lists left as they are);
* ``Store.records()`` + ``json_normalize`` — what a hand-written reader of the database does;
* the same ``frame()`` from the team store on PostgreSQL (a throwaway server from
  ``tests/_postgres.py`` when Debian's ``postgresql`` is installed, or ``--postgres URL``).

Run: ``python benchmarks/bench_history_frame.py [--jobs 100000] [--repeat 5] [--postgres URL|none]``
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout
from jupyter_imagine._config import TEAM_STORE_SCHEMES
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.store import Store, open_store

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
PROVIDERS = ("apiframe", "thenextleg", "blockade", "neuroflash", "banatie")
KINDS = {
    "apiframe": ("imagine", "upscale", "variation", "reroll"),
    "thenextleg": ("imagine", "upscale", "variation", "reroll"),
    "blockade": ("skybox", "remix"),
    "neuroflash": ("imagine", "edit", "upscale"),
    "banatie": ("generation", "regenerate"),
}
SUBJECTS = ("a lighthouse at dusk", "a pine forest in snow", "a harbour at night",
            "a desert road", "a city of glass", "a fox in the rain")


def make_records(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    records: list[dict] = []
    last_root: dict[str, str] = {}
    for i in range(n):
        provider = PROVIDERS[i % 5]
        kind = rng.choice(KINDS[provider])
        status = rng.choices(list(Status), weights=(1, 2, 85, 10, 2))[0]
        created = T0 + timedelta(seconds=i * 20 + rng.random())
        started = created + timedelta(seconds=rng.uniform(0.05, 3))
        done = started + timedelta(seconds=rng.uniform(5, 60)) if status.final else None
        images: list[Image] = []
        if status is Status.SUCCEEDED:
            base = f"https://cdn.example/{provider}/{i}"
            if provider == "blockade":
                images = [Image(url=f"{base}/pano.jpg", path=f"/h/images/{i:06x}p.jpg",
                                width=2048, height=1024),
                          Image(url=f"{base}/thumb.jpg", role="thumbnail"),
                          Image(url=f"{base}/depth.png", role="depth")]
            else:
                count = 4 if kind in ("imagine", "variation", "reroll") else 1
                images = [Image(url=f"{base}/{k}.png", path=f"/h/images/{i:06x}{k}.png",
                                width=512, height=512, index=k + 1 if count > 1 else None)
                          for k in range(count)]
        root_kind = kind in ("imagine", "skybox", "generation")
        parent = None if root_kind else last_root.get(provider)
        params = {"aspect_ratio": rng.choice(("1:1", "3:2", "16:9")), "seed": rng.randrange(10**6)}
        if provider == "blockade":
            params = {"skybox_style_id": rng.randrange(1, 40), "negative_text": "fog"}
        job = Job(
            provider=provider, kind=kind, prompt=f"{rng.choice(SUBJECTS)} #{i}", params=params,
            parent_id=parent, remote_id=f"{provider}-{i}", status=status, images=images,
            error="the job failed upstream" if status is Status.FAILED else None,
            sandbox=True, submit_state="sent", created_at=created, started_at=started,
            completed_at=done,
            raw={"id": f"{provider}-{i}", "status": status.value,
                 "image_urls": [img.url for img in images], "percentage": "100"},
        )
        if parent is None:
            last_root[provider] = job.id
        records.append(job.to_record())
    return records


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    samples = []
    result = None
    for _ in range(repeat):
        result = None  # free the previous result outside the timed region
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return min(samples), statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default="auto",
                        help="a postgresql:// URL of an empty database, 'auto' (default: a "
                             "throwaway local server if PostgreSQL is installed) or 'none'")
    args = parser.parse_args()
    if args.postgres not in ("auto", "none") and not args.postgres.startswith(
            TEAM_STORE_SCHEMES):
        parser.error(f"--postgres {args.postgres!r}: give a postgresql:// URL, 'auto' or 'none'")
    records = make_records(args.jobs)
    with tempfile.TemporaryDirectory(prefix="ji-frame-") as home:
        store = Store(home)
        t0 = time.perf_counter()
        store._bulk_save(records)
        saved = time.perf_counter() - t0
        store.frame(limit=10)  # warm the page cache and the imports
        f_best, f_med, frame = timed(store.frame, args.repeat)
        still = timed_kept(store, None, args.repeat)
        other = Store(home)
        changed = timed_kept(store, lambda k: change(other, records, k), args.repeat)
        other.close()
        n_best, n_med, flat = timed(lambda: pd.json_normalize(records), args.repeat)
        r_best, r_med, _ = timed(lambda: pd.json_normalize(store.records()),
                                 max(1, args.repeat // 2))
        store.close()
    print(f"{args.jobs:,} stored jobs of 5 providers (bulk save {saved:.1f} s)")
    print(f"  Store.frame() / history()           best {f_best:6.3f} s   median {f_med:6.3f} s   "
          f"{frame.index.nlevels} + {frame.shape[1]} typed columns (goal ≤ 0.25 s)")
    print(f"  again, nothing changed              best {still[0]:6.3f} s   median {still[1]:6.3f} s"
          "   the last frame alive: its parts reused")
    print(f"  again, 100 new + 100 finished       best {changed[0]:6.3f} s   median "
          f"{changed[1]:6.3f} s   by another store: changed blocks read")
    print(f"  pandas.json_normalize(records)      best {n_best:6.3f} s   median {n_med:6.3f} s   "
          f"{flat.shape[1]} object columns, records already in memory")
    print(f"  Store.records() + json_normalize    best {r_best:6.3f} s   median {r_med:6.3f} s")
    print(f"  ratio frame / json_normalize        {f_best / n_best:6.2f} first read, "
          f"{changed[0] / n_best:.2f} again after changes   (goal ≤ 0.25)")
    with_journal, without = save_costs(records[:2000])
    print(f"  Store.save(), per job               {with_journal[0] * 1e3:6.3f} ms new, "
          f"{with_journal[1] * 1e3:.3f} ms update with the change journal; "
          f"{without[0] * 1e3:.3f} / {without[1] * 1e3:.3f} ms without")
    team = postgres_frame(records, args)
    if team is not None:
        p_best, p_med, p_saved = team
        print(f"  PostgreSQL store.frame()            best {p_best:6.3f} s   median {p_med:6.3f} s"
              f"   same frame (bulk save {p_saved:.1f} s)")
    print(f"  load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


def change(store: Store, records: list[dict], k: int) -> None:
    """What a busy notebook does between two reads: 100 new jobs and 100 recent ones finished
    (new ids each round ``k``)."""
    for rec in records[:100]:
        new = {**rec, "id": f"{rec['id']}-{k}", "remote_id": f"{rec['remote_id']}-{k}",
               "status": "running", "completed_at": None}
        store.save(new)
        store.save({**new, "status": "succeeded", "completed_at": rec["created_at"]})


def timed_kept(store: Store, between: Callable[[int], None] | None, repeat: int
               ) -> tuple[float, float]:
    """(best, median) of ``store.frame()`` read again while the frame before is alive, after
    ``between(k)`` changed the history (``None``: nothing changed)."""
    samples = []
    kept = store.frame()
    for k in range(repeat):
        if between is not None:
            between(k)
        gc.collect()
        t0 = time.perf_counter()
        frame = store.frame()
        samples.append(time.perf_counter() - t0)
        kept = frame
    del kept
    return min(samples), statistics.median(samples)


_JOURNAL_TRIGGERS = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"


def save_costs(records: list[dict]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Seconds per ``save()`` of a new job and of an update, with the change journal's
    triggers, then in another store whose triggers were dropped."""
    import sqlite3

    costs = []
    for journal in (True, False):
        with tempfile.TemporaryDirectory(prefix="ji-save-") as home, Store(home) as store:
            if not journal:
                with sqlite3.connect(store.path) as conn:
                    triggers = [name for (name,) in conn.execute(_JOURNAL_TRIGGERS)]
                    assert len(triggers) == 3, f"expected the journal's 3 triggers, not {triggers}"
                    for name in triggers:
                        conn.execute(f"DROP TRIGGER {name}")
            per_kind = []
            for rows in (records, [{**r, "status": "failed"} for r in records]):
                t0 = time.perf_counter()
                for rec in rows:
                    store.save(rec)
                per_kind.append((time.perf_counter() - t0) / len(rows))
            costs.append((per_kind[0], per_kind[1]))
    return costs[0], costs[1]


def postgres_frame(records: list[dict], args: argparse.Namespace
                   ) -> tuple[float, float, float] | None:
    """(best, median, bulk-save seconds) of the team store's frame, or ``None`` (no server)."""
    import contextlib

    with contextlib.ExitStack() as stack:
        url = args.postgres
        if url == "none":
            return None
        if url == "auto":
            from _postgres import Server, available

            if not available():
                print("  PostgreSQL store.frame()            (no PostgreSQL installed)")
                return None
            url = stack.enter_context(Server()).create_database("bench")
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="ji-frame-pg-"))
        store = stack.enter_context(open_store(url, home=home))
        t0 = time.perf_counter()
        for start in range(0, len(records), 10_000):
            store._bulk_save(records[start:start + 10_000])
        saved = time.perf_counter() - t0
        store.frame(limit=10)
        best, median, frame = timed(store.frame, args.repeat)
        assert len(frame) == len(records)
        return best, median, saved


if __name__ == "__main__":
    main()
