"""Budgets (issue 14): the engine reserves a job's price before sending it, refuses what would
pass a budget, settles or releases; batches stop at a budget and resume. In-process sandbox."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pandas as pd
import pytest
from _widgets_util import until

import jupyter_imagine as ji
from jupyter_imagine import _budgets, _config
from jupyter_imagine.models import Cost, Status


@pytest.fixture(autouse=True)
def _no_budgets():
    """Budgets and prices are session settings: none before and after each test."""
    ji.configure(budget=None, prices=None)
    yield
    ji.configure(budget=None, prices=None)


def imagines(state) -> int:
    """POST /apiframe/imagine requests the sandbox received."""
    return sum(n for (method, path), n in state.requests.items()
               if method == "POST" and path.endswith("/apiframe/imagine"))


def refusal(job) -> str:
    """The BudgetExceeded message of a refused job (``wait()`` raises JobFailed from it)."""
    with pytest.raises(ji.JobFailed) as failed:
        job.wait(30)
    assert isinstance(failed.value.__cause__, ji.BudgetExceeded), failed.value
    assert job.error_type == "BudgetExceeded"
    return str(failed.value.__cause__)


def ledger(engine) -> dict[str, tuple]:
    return {job_id: (state, amount, cost) for job_id, state, amount, cost in engine.store._query(
        "SELECT job_id, state, amount, cost FROM reservations")}


def test_a_job_that_would_pass_the_session_budget_is_never_sent(engine, sandbox):
    ji.configure(budget={"apiframe": 8})
    first, second = ji.imagine("a harbour").wait(30), ji.imagine("a pier").wait(30)
    third = ji.imagine("a lighthouse")
    message = refusal(third)
    assert message.startswith("not sent: this imagine needs 4 credits")
    assert "needs 4 credits" in message and "apiframe: 8 credits per day (UTC)" in message
    assert "8 spent and 0 reserved" in message and "ji.configure(budget=" in message
    assert third.status is Status.FAILED and third.error_type == "BudgetExceeded"
    assert third.remote_id is None and imagines(sandbox) == 2  # never sent
    assert engine.store.spent("apiframe", "credits") == 8.0
    assert ledger(engine) == {first.id: ("settled", 4.0, 4.0), second.id: ("settled", 4.0, 4.0)}


def test_a_budget_in_a_unit_the_provider_does_not_price_in_is_refused(engine):
    ji.configure(budget={"banatie": {"amount": 3, "unit": "requests"}})  # its own unit: kept
    with pytest.raises(ji.ConfigurationError) as info:
        ji.configure(budget={"apiframe": {"amount": 5, "unit": "usd"}})
    assert str(info.value) == (
        "the budget of apiframe is in 'usd', but APIFRAME prices its jobs in credits, so it "
        "would never bind; give it in credits or leave unit out"
    )
    assert ji.configure()["budget"] == {"banatie": (3.0, "day")}  # the refused one is not set


def test_an_upscale_still_fits_where_an_imagine_does_not(engine, sandbox):
    ji.configure(budget={"apiframe": (6, "week")})
    job = ji.imagine("a harbour").wait(30)
    assert job.upscale(1).wait(30).status is Status.SUCCEEDED  # 4 + 2 = 6
    assert "per week" in refusal(job.upscale(2))


def test_a_call_budget_refuses_a_job_that_costs_more(engine, sandbox):
    assert "this call's budget=3 credits" in refusal(ji.imagine("a harbour", budget=3))
    assert imagines(sandbox) == 0
    assert ji.imagine("a harbour", budget=4, wait=True).status is Status.SUCCEEDED
    with pytest.raises(ji.InvalidRequest, match="budget= must be a finite number"):
        ji.imagine("a harbour", budget=-1)


def test_a_failed_job_gives_its_reservation_back(engine, sandbox):
    ji.configure(budget={"apiframe": 4})
    sandbox.faults.add("/apiframe/imagine", status=400, count=1)
    failed = ji.imagine("a harbour")
    with pytest.raises(ji.JobFailed):
        failed.wait(30)
    assert ledger(engine)[failed.id][0] == "released"
    assert ji.imagine("a pier", wait=True).status is Status.SUCCEEDED  # the 4 are free again


def test_price_overrides_change_what_is_reserved_and_recorded(engine, sandbox):
    ji.configure(prices={"apiframe": {"imagine": 1.5}}, budget={"apiframe": 3})
    jobs = [ji.imagine(f"a harbour {i}") for i in range(3)]
    for job in jobs:
        job.future.result(30)
    assert sorted(j.error_type or j.status.value for j in jobs) == [
        "BudgetExceeded", "succeeded", "succeeded"]
    df = ji.history(status="succeeded")
    assert df["cost"].tolist() == [1.5, 1.5] and set(df["cost_source"]) == {"prices"}


def test_batch_stops_at_its_budget_and_resumes_with_a_larger_one(engine, sandbox):
    prompts = [f"a harbour {i}" for i in range(5)]
    df = ji.batch(prompts, budget=8, max_concurrency=1, progress=False)
    assert df["status"].tolist()[:2] == ["succeeded", "succeeded"]
    assert df.attrs["unsubmitted"] == [2, 3, 4] and imagines(sandbox) == 2
    assert df["status"].tolist()[2] == "failed" and df["error"][2].startswith("not sent:")
    assert df["id"].isna().tolist() == [False, False, False, True, True]  # never created
    again = ji.batch(prompts, budget=20, max_concurrency=1, progress=False)
    assert again["status"].tolist() == ["succeeded"] * 5 and again.attrs["unsubmitted"] == []
    assert imagines(sandbox) == 5  # each row sent once
    assert engine.store.spent("apiframe", "credits", batch_id=df.attrs["batch_id"]) == 20.0


def test_batch_dry_run_estimates_the_rows_left_and_sends_nothing(engine, sandbox):
    prompts = [f"a pier {i}" for i in range(3)]
    estimate = ji.batch(prompts, dry_run=True)
    assert imagines(sandbox) == 0
    assert estimate.total("apiframe") == 12.0
    assert repr(estimate).startswith("batch of 3 prompts not submitted yet:")
    row = estimate.frame.iloc[0]
    assert row["jobs"] == 3 and row["balance"] == 10000.0 and bool(row["fits"])
    assert pd.isna(row["budget_left"])  # no session budget
    ji.configure(budget={"apiframe": 10})
    row = ji.batch(prompts, dry_run=True).frame.iloc[0]
    assert row["budget_left"] == 10.0 and not row["fits"]


# ------------------------------------------------------------------ the rules themselves
def test_budgets_for_names_each_budget_and_its_period():
    session = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    now = datetime(2024, 5, 15, 18, tzinfo=timezone.utc)  # a Wednesday
    _config.set_budget({"apiframe": "50/week"})
    price = Cost(4.0, "credits", "prices")
    found = _budgets.budgets_for("apiframe", price, _budgets.CallBudget(10, "b-1"), session, now)
    assert [b.label for b in found] == ["apiframe: 50 credits per week (UTC)",
                                        "batch b-1's budget=10 credits"]
    assert found[0].since == datetime(2024, 5, 13, tzinfo=timezone.utc)
    assert found[1].batch_id == "b-1" and not found[1].local
    _config.set_budget({"apiframe": {"amount": 50, "period": "month", "unit": "credits"}})
    (monthly,) = _budgets.budgets_for("apiframe", price, None, session, now)
    assert monthly.since == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert _budgets.budgets_for("apiframe", Cost(1, "fast_seconds", "prices"), None, session,
                                now) == []  # another unit: not this budget
    assert _budgets.budgets_for("thenextleg", price, None, session, now) == []


def test_a_batch_out_of_credits_stops_and_resumes_once_topped_up(engine, sandbox):
    account = sandbox.providers["apiframe"]
    account.credits = 8  # two imagines
    prompts = [f"a cliff {i}" for i in range(4)]
    df = ji.batch(prompts, max_concurrency=1, progress=False)
    assert df["status"].tolist()[:2] == ["succeeded", "succeeded"]
    assert df.attrs["unsubmitted"] == [2, 3]
    refused = engine.get(df["id"][2])
    assert refused.error_type == "QuotaExceeded" and refused.remote_id is None
    account.credits = 100  # topped up
    again = ji.batch(prompts, max_concurrency=1, progress=False)
    assert again["status"].tolist() == ["succeeded"] * 4 and again.attrs["unsubmitted"] == []
    assert again["id"][:2].tolist() == df["id"][:2].tolist()  # the first two were kept
    assert account.credits == 100 - 8 and imagines(sandbox) == 2 + 1 + 2  # one refused POST


def test_a_job_resumed_by_another_engine_settles_the_reservation_made_before(tmp_path):
    from jupyter_imagine.engine import Engine
    from jupyter_imagine.sandbox import create_app
    from jupyter_imagine.store import Store

    fast = {"backoff_base": 0.01, "backoff_cap": 0.2, "sandbox_speed": 40}
    app = create_app(speed=40)  # an imagine takes about a second
    home = tmp_path / "home"
    ji.configure(budget={"apiframe": 4})
    first = Engine(Store(home), sandbox_app=app, **fast).start()
    job = first.imagine("a harbour at night", provider="apiframe")
    for _ in range(300):
        if job.submit_state == "sent":
            break
        time.sleep(0.01)
    first.close()
    with Store(home) as store:
        assert store.reserved("apiframe", "credits") == 4.0  # held while it runs elsewhere
    with Engine(Store(home), sandbox_app=app, **fast) as second:
        resumed = second.get(job.id).wait(60)
        assert resumed.status is Status.SUCCEEDED
        until(lambda: ledger(second).get(job.id, ("",))[0] == "settled", 10)
        assert ledger(second)[job.id] == ("settled", 4.0, 4.0)
        assert second.store.reserved("apiframe", "credits") == 0.0


