"""``jupyter_imagine.batch``: many prompts in, a frame out, bounded, resumable after a restart."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

import jupyter_imagine as ji
from jupyter_imagine import _batch
from jupyter_imagine.engine import Engine
from jupyter_imagine.models import Status, WaitInterrupted
from jupyter_imagine.sandbox import create_app
from jupyter_imagine.store import Store

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}


def imagine_posts(state) -> int:
    return sum(n for (m, p), n in state.requests.items()
               if m == "POST" and p.endswith("/apiframe/imagine"))


def test_list_of_prompts_in_frame_out(engine, sandbox):
    out = ji.batch(["a red fox", "a blue whale", "a green frog"], progress=False)
    assert out["prompt"].tolist() == ["a red fox", "a blue whale", "a green frog"]
    assert out["status"].tolist() == ["succeeded"] * 3
    assert isinstance(out["status"].dtype, pd.CategoricalDtype)
    assert out["provider"].tolist() == ["apiframe"] * 3
    assert out["image_paths"].map(len).tolist() == [4, 4, 4]
    assert out["error"].isna().all()
    assert out.attrs["batch_id"].startswith("batch-")
    hist = ji.history().droplevel("provider")
    assert set(out["id"]) <= set(hist.index)
    assert hist.loc[out["id"].iloc[1], "prompt"] == "a blue whale"
    assert engine.store.batch_rows(out.attrs["batch_id"]) == dict(enumerate(out["id"]))
    assert [j.prompt for j in out.imagine.jobs()] == out["prompt"].tolist()
    assert imagine_posts(sandbox) == 3


def test_extra_columns_are_parameters_and_na_is_left_out(engine):
    df = pd.DataFrame(
        {"text": ["a cabin", "a tower"], "aspect_ratio": ["3:2", None],
         "process_mode": [pd.NA, "turbo"]},
        index=["first", "second"],
    )
    out = ji.batch(df, prompt="text", progress=False)
    assert list(out.index) == ["first", "second"]
    assert list(out.columns) == ["text", "aspect_ratio", "process_mode", "provider", "id",
                                 "status", "image_paths", "error"]
    jobs = out.imagine.jobs()
    assert jobs[0].params == {"aspect_ratio": "3:2"}
    assert jobs[1].params == {"process_mode": "turbo"}


def test_per_row_providers(engine):
    rows = [{"prompt": "a skybox of mars", "provider": "blockade"},
            {"prompt": "a banana", "provider": "banatie", "aspect_ratio": "16:9"},
            {"prompt": "a lighthouse"}]
    out = ji.batch(rows, progress=False)
    assert out["provider"].tolist() == ["blockade", "banatie", "apiframe"]
    assert out["status"].tolist() == ["succeeded"] * 3
    assert out.imagine.jobs()[1].params == {"aspect_ratio": "16:9"}


def test_invalid_rows_submit_nothing(engine, sandbox):
    df = pd.DataFrame({"prompt": ["ok", "", "fine", None], "colour": ["red", "red", None, None]})
    with pytest.raises(ji.InvalidRequest) as info:
        ji.batch(df, progress=False)
    message = str(info.value)
    assert message.startswith("nothing was submitted: 3 rows are invalid")
    assert "row 0: unknown parameter 'colour'" in message and "row 1:" in message
    assert "row 2" not in message and "row 3: the prompt is empty" in message
    with pytest.raises(ji.InvalidRequest, match="no prompt column 'prompt'"):
        ji.batch(pd.DataFrame({"text": ["a"]}), progress=False)
    with pytest.raises(ji.InvalidRequest, match="unknown provider"):
        ji.batch(["a"], provider="nope", progress=False)
    with pytest.raises(ji.InvalidRequest, match="max_concurrency"):
        ji.batch(["a"], max_concurrency=0, progress=False)
    with pytest.raises(ji.InvalidRequest, match="many prompts"):
        ji.batch("just one", progress=False)
    assert imagine_posts(sandbox) == 0 and engine.store.records() == []


def test_an_empty_list_is_an_empty_result_like_an_empty_frame(engine):
    empty = ji.batch([], progress=False)
    assert empty.empty and list(empty.columns) == list(
        ji.batch(pd.DataFrame({"prompt": []}), progress=False).columns)
    assert "prompt" in empty.columns and engine.store.records() == []


def test_max_concurrency_bounds_the_batch_in_flight(engine):
    in_flight: set[str] = set()
    peak = []
    lock = threading.Lock()
    original = engine.imagine

    def watch(job, changed):
        with lock:
            if job.status.final:
                in_flight.discard(job.id)

    def imagine(*args, **kwargs):
        job = original(*args, **kwargs)
        with lock:
            in_flight.add(job.id)
            peak.append(len(in_flight))
        job.observe(watch)
        if job.status.final:
            watch(job, frozenset())
        return job

    engine.imagine = imagine
    out = ji.batch([f"a kite {i}" for i in range(6)], max_concurrency=2, progress=False)
    assert out["status"].tolist() == ["succeeded"] * 6
    assert max(peak) <= 2 and len(peak) == 6


def test_same_input_twice_resumes_instead_of_resubmitting(engine, sandbox):
    prompts = ["a mill", "a bridge"]
    first = ji.batch(prompts, progress=False)
    second = ji.batch(prompts, progress=False)
    assert second["id"].tolist() == first["id"].tolist()
    assert imagine_posts(sandbox) == 2
    third = ji.batch(prompts, name="again", progress=False)
    assert set(third["id"]).isdisjoint(first["id"]) and imagine_posts(sandbox) == 4
    with pytest.raises(ji.InvalidRequest, match="different job"):
        ji.batch(["a castle", "a moat"], name="again", progress=False)
    with pytest.raises(ji.InvalidRequest, match="already has"):
        ji.batch(["a mill"], name="again", progress=False)


def test_a_batch_survives_a_kernel_restart(tmp_path):
    """Two engines on one store and one sandbox: the first dies after two submissions."""
    app = create_app(speed=1000)
    state = app.state.sandbox
    prompts = [f"a harbour {i}" for i in range(5)]
    first = Engine(Store(tmp_path / "home"), sandbox_app=app, **FAST).start()
    calls = {"n": 0}
    original = first.imagine

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the kernel goes away in the middle of the batch
        return original(*args, **kwargs)

    first.imagine = dying
    with pytest.raises(KeyboardInterrupt):
        _batch.batch(prompts, max_concurrency=2, progress=False, engine=first,
                     provider="apiframe")
    first.close()
    assert imagine_posts(state) == 2
    batch_id = _batch.batch_id_of(
        [_batch._Row(i, "apiframe", p, {}) for i, p in enumerate(prompts)]
    )
    assert sorted(Store(tmp_path / "home").batch_rows(batch_id)) == [0, 1]

    second = Engine(Store(tmp_path / "home"), sandbox_app=app, **FAST)
    with second:
        out = _batch.batch(prompts, max_concurrency=2, progress=False, engine=second,
                           provider="apiframe")
        assert out["status"].tolist() == ["succeeded"] * 5
        assert out.attrs["batch_id"] == batch_id
        assert sorted(second.store.batch_rows(batch_id)) == [0, 1, 2, 3, 4]
    assert imagine_posts(state) == 5  # rows 0 and 1 were not sent again


def test_wait_false_returns_at_once_and_a_second_call_collects(engine):
    prompts = [f"a lantern {i}" for i in range(3)]
    t0 = time.perf_counter()
    early = ji.batch(prompts, wait=False, max_concurrency=1, progress=False)
    assert time.perf_counter() - t0 < 5
    assert early["id"].notna().sum() >= 1
    deadline = time.monotonic() + 60
    while True:
        late = ji.batch(prompts, wait=False, progress=False)
        if late["status"].eq("succeeded").all() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert late["status"].tolist() == ["succeeded"] * 3
    assert late.attrs["batch_id"] == early.attrs["batch_id"]
    final = ji.batch(prompts, progress=False)
    assert final["id"].tolist() == late["id"].tolist()


def test_failed_rows_are_reported_not_raised(engine):
    out = ji.batch(["a good one", "a bad one sandbox:fail"], progress=False)
    assert out["status"].tolist() == ["succeeded", "failed"]
    assert pd.isna(out["error"].iloc[0]) and "could not complete" in out["error"].iloc[1]
    assert out["image_paths"].iloc[1] == []
    assert out.imagine.jobs()[1].status is Status.FAILED


def test_progress_on_stderr_counts_jobs_and_failures(engine, capfd):
    ji.batch(["a good one", "a bad one sandbox:fail"])
    err = capfd.readouterr().err  # outside a notebook: a tqdm bar on stderr
    last = err.strip().split("\r")[-1]
    assert last.startswith("batch of 2 prompts: 100%") and "2/2" in last
    assert "1 failed" in last and "batch-" not in err  # a human label, not the batch id


def test_progress_in_a_notebook_is_labelled_for_a_person(engine, progress_kernel):
    shown, updates = progress_kernel
    ji.batch(["a red fox", "a blue whale", "a green frog"], name="foxes")
    assert len(shown) == 1
    final = updates[-1]["text/plain"]
    assert final.startswith("batch of 3 prompts (foxes)") and "3/3 jobs" in final
    assert "failed" not in final and "in flight" not in final


def test_batch_label():
    assert _batch.batch_label(1, None) == "batch of 1 prompt"
    assert _batch.batch_label(40, "night run") == "batch of 40 prompts (night run)"


def test_ctrl_c_stops_submitting_in_one_line_and_the_same_call_resumes(engine, sandbox,
                                                                         monkeypatch):
    original = _batch._Driver._submit
    calls = []

    def submit(self, row):
        calls.append(row.number)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second row is being submitted
        return original(self, row)

    monkeypatch.setattr(_batch._Driver, "_submit", submit)
    prompts = ["a dune", "a dune at noon", "a dune at night"]
    with pytest.raises(KeyboardInterrupt) as info:
        ji.batch(prompts, progress=False)
    assert isinstance(info.value, WaitInterrupted) and info.value.job is None
    assert str(info.value) == (
        "stopped waiting; 1 of 3 rows were submitted and keep running — call ji.batch() "
        "again with the same input to resume"
    )
    monkeypatch.undo()
    out = ji.batch(prompts, progress=False)
    assert out["status"].tolist() == ["succeeded"] * 3
    assert imagine_posts(sandbox) == 3  # the first row was not submitted twice
