"""Tests of ``python -m jupyter_imagine.store migrate`` (jupyter_imagine.store._migrate):
a real SQLite history copied into a real PostgreSQL server (tests/_postgres.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image as PILImage

from jupyter_imagine.errors import InvalidRequest
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.store import Store, open_store
from jupyter_imagine.store._migrate import migrate

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[1]


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8), (i * 40 % 256, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


def personal_history(home: Path, n: int = 12) -> list[Job]:
    """A SQLite history of ``n`` imagines (half with an upscale child), images on disk."""
    jobs = []
    with Store(home) as store:
        for i in range(n):
            path = store.put_image(_png(i))
            job = Job(provider="apiframe", kind="imagine", prompt=f"a barn {i}",
                      status=Status.SUCCEEDED, remote_id=f"r{i}",
                      created_at=T0 + timedelta(minutes=i),
                      images=[Image(url=f"https://cdn/{i}.png", path=str(path))])
            store.save(job.to_record())
            jobs.append(job)
            if i % 2 == 0:
                child = Job(provider="apiframe", kind="upscale", prompt=job.prompt,
                            parent_id=job.id, status=Status.SUCCEEDED,
                            created_at=T0 + timedelta(minutes=i, seconds=30))
                store.save(child.to_record())
                jobs.append(child)
    return jobs


def test_a_personal_history_lands_in_the_team_store_once(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_USER", "ann")
    jobs = personal_history(tmp_path / "laptop")
    with open_store(pg_url, home=tmp_path / "team-cache") as team:
        first = migrate(tmp_path / "laptop", team)
        assert (first.read, first.added, first.skipped) == (len(jobs), len(jobs), [])
        again = migrate(tmp_path / "laptop", team)
        assert (again.read, again.added) == (len(jobs), 0)  # idempotent: nothing twice
        assert str(again).startswith(f"copied {len(jobs)} jobs (0 new, {len(jobs)} already")
        df = team.frame()
    with Store(tmp_path / "laptop") as mine:
        ours = mine.frame()
    assert sorted(df.index) == sorted(ours.index)
    cols = ["status", "prompt", "parent_id", "root_id", "remote_id", "user", "host"]
    assert df.loc[ours.index, cols].astype(str).equals(ours[cols].astype(str))
    assert set(df["user"]) == {"ann"}


def test_images_are_copied_and_the_rows_point_at_the_copies(tmp_path, pg_url):
    jobs = personal_history(tmp_path / "laptop", n=3)
    with open_store(pg_url, home=tmp_path / "team-cache") as team:
        report = migrate(tmp_path / "laptop", team, images=True)
        assert report.images == 3
        for job in jobs:
            if job.images:
                stored = team.get(job.id)["images"][0]["path"]
                assert stored.startswith(str(tmp_path / "team-cache"))
                assert Path(stored).read_bytes() == Path(job.images[0].path).read_bytes()


def test_a_finished_team_row_is_never_rolled_back_and_a_conflict_is_skipped(tmp_path, pg_url):
    jobs = personal_history(tmp_path / "laptop", n=2)
    with open_store(pg_url, home=tmp_path / "team-cache") as team:
        done = Job.from_record({**jobs[0].to_record(), "status": "failed"})
        team.save(done.to_record())  # the team already has it, final with another status
        clash = Job(provider="apiframe", kind="imagine", prompt="someone else's",
                    remote_id=jobs[-1].remote_id, status=Status.SUCCEEDED)
        team.save(clash.to_record())  # another local id for the same provider job
        report = migrate(tmp_path / "laptop", team)
        assert [job_id for job_id, _ in report.skipped] == [jobs[-1].id]
        assert "already" in report.skipped[0][1] and "skipped 1" in str(report)
        assert team.get(jobs[0].id)["status"] == "failed"
        assert report.added == len(jobs) - 2  # all but the one there and the clash


def test_no_history_at_the_source_is_one_line(tmp_path, pg_url):
    with open_store(pg_url, home=tmp_path) as team, \
            pytest.raises(InvalidRequest, match="there is no history at .* with --from"):
        migrate(tmp_path / "nothing-here", team)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jupyter_imagine.store", *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=cwd)


def test_the_command_line(tmp_path, pg_url):
    jobs = personal_history(tmp_path / "laptop", n=2)
    done = _cli("migrate", "--to", pg_url, "--from", str(tmp_path / "laptop"), "--images")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"copied {len(jobs)} jobs ({len(jobs)} new, 0 already there)")
    assert "2 image files" in done.stdout
    bad = _cli("migrate", "--to", "postgresql://ann:pw-secret@127.0.0.1:9/x",
               "--from", str(tmp_path / "laptop"))
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "pw-secret" not in bad.stderr
    assert bad.stderr.startswith("error: the team store at postgresql://ann@127.0.0.1:9/x")
    sqlalchemy = _cli("migrate", "--to", "postgresql+psycopg2://ann:pw-secret@db/x",
                      "--from", str(tmp_path / "laptop"), cwd=tmp_path)
    assert sqlalchemy.returncode == 1 and sqlalchemy.stderr.count("\n") == 1
    assert "drop '+psycopg2'" in sqlalchemy.stderr and "pw-secret" not in sqlalchemy.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["laptop"]  # nothing copied locally
