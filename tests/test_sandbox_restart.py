"""Offline jobs survive a kernel restart: each engine makes its own in-process sandbox, kept in
``<home>/sandbox``, so a new engine on the same home resumes what the old one left running."""

from __future__ import annotations

import time

import pytest

from jupyter_imagine import _batch
from jupyter_imagine.engine import Engine
from jupyter_imagine.models import Status
from jupyter_imagine.store import Store

FAST = {"backoff_base": 0.01, "backoff_cap": 0.2}
SLOW = {**FAST, "sandbox_speed": 2.0}  # an imagine takes far longer than the test's first half
QUICK = {**FAST, "sandbox_speed": 1000.0}


def imagine_posts(engine: Engine) -> int:
    state = engine.sandbox_app().state.sandbox
    return sum(n for (m, p), n in state.requests.items()
               if m == "POST" and p.endswith("/apiframe/imagine"))


def _sent(job, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while job.submit_state != "sent" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.submit_state == "sent"


def test_an_imagine_interrupted_by_a_restart_finishes_offline(tmp_path):
    home = tmp_path / "home"
    first = Engine(Store(home), **SLOW).start()
    job = first.imagine("a harbour at night", provider="apiframe")
    _sent(job)
    first.close()
    assert Store(home).get(job.id)["status"] in ("queued", "running")
    assert (home / "sandbox").is_dir()

    with Engine(Store(home), **QUICK) as second:
        resumed = second.get(job.id)
        resumed.wait(30)
        assert resumed.status is Status.SUCCEEDED and len(resumed.images) == 4
        assert resumed.remote_id == job.remote_id
        assert imagine_posts(second) == 0  # re-attached, not sent again


def test_a_batch_resumes_offline_after_a_restart(tmp_path):
    home = tmp_path / "home"
    prompts = [f"a harbour {i}" for i in range(5)]
    first = Engine(Store(home), **SLOW).start()
    calls = {"n": 0}
    original = first.imagine

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the kernel goes away in the middle of the batch
        return original(*args, **kwargs)

    first.imagine = dying
    with pytest.raises(KeyboardInterrupt):
        _batch.batch(prompts, max_concurrency=5, progress=False, engine=first,
                     provider="apiframe")
    deadline = time.monotonic() + 20
    while imagine_posts(first) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the two submissions reach the sandbox
    time.sleep(0.2)
    first.close()
    assert imagine_posts(first) == 2

    with Engine(Store(home), **QUICK) as second:
        out = _batch.batch(prompts, max_concurrency=2, progress=False, engine=second,
                           provider="apiframe")
        assert out["status"].tolist() == ["succeeded"] * 5, out["error"].tolist()
        assert imagine_posts(second) == 3  # rows 0 and 1 re-attached, not sent again
