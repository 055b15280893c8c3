"""Estimates and balances (jupyter_imagine._spend) against the in-process sandbox."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import jupyter_imagine as ji
from jupyter_imagine import _spend
from jupyter_imagine._spend import kind_of_action


@pytest.fixture(autouse=True)
def _fresh():
    """No budgets or price overrides, and no cached balances, before and after each test."""
    ji.configure(budget=None, prices=None)
    _spend._CACHE.clear()
    yield
    ji.configure(budget=None, prices=None)
    _spend._CACHE.clear()


def account_reads(state) -> int:
    return sum(n for (method, path), n in state.requests.items()
               if method == "GET" and path.endswith("/apiframe/account"))


def test_estimate_prices_prompts_and_their_actions(engine, sandbox):
    got = ji.estimate(["a harbour", "a pier"], provider="apiframe", actions=["U1", "V1"])
    row = got.frame.set_index("provider").loc["apiframe"]
    assert (row["unit"], row["jobs"], row["unpriced"]) == ("credits", 6, 0)
    assert row["expected"] == 2 * (4 + 2 + 4) == got.total("apiframe")
    assert row["balance"] == 10000.0 and bool(row["fits"])
    assert repr(got).startswith("estimate of 2 prompts with U1, V1 on each:")
    assert "<table" in got._repr_html_()
    assert sum(n for (method, _), n in sandbox.requests.items() if method == "POST") == 0


def test_estimate_against_the_budget_left(engine, sandbox):
    ji.imagine("a harbour", wait=True)
    ji.configure(budget={"apiframe": 10})
    row = ji.estimate(["a", "b"]).frame.iloc[0]
    assert row["budget_left"] == 6.0 and row["expected"] == 8.0 and not row["fits"]


def test_estimate_of_a_history_frame_and_of_unpriced_jobs(engine, sandbox):
    ji.imagine("a harbour", wait=True)
    df = ji.history()
    row = ji.estimate(df).frame.iloc[0]
    assert (row["provider"], row["jobs"], row["expected"]) == ("apiframe", 1, 4.0)
    other = ji.estimate(["a harbour"], provider="thenextleg").frame.iloc[0]  # no price published
    assert other["unpriced"] == 1 and pd.isna(other["expected"]) and pd.isna(other["fits"])


def test_overridden_prices_change_the_estimate(engine):
    ji.configure(prices={"apiframe": {"imagine": 7}})
    assert ji.estimate(["a", "b"]).total("apiframe") == 14.0


@pytest.mark.parametrize(("label", "kind", "params"), [
    ("U3", "upscale", {}), ("V2", "variation", {}), ("🔄", "reroll", {}),
    ("Vary (Region)", "vary_region", {}), ("Upscale (4x)", "upscale", {"type": "4x"}),
    ("Zoom Out 2x", "outpaint", {}), ("⬅️", "pan", {}), ("Remix", "remix", {}),
])
def test_kind_of_action(label, kind, params):
    assert kind_of_action(label) == (kind, params)


def test_balance_reads_every_configured_provider_once_a_minute(engine, sandbox):
    got = ji.balance()
    assert set(got.frame["provider"]) == {"apiframe", "banatie", "blockade", "neuroflash",
                                          "thenextleg"}
    row = got.frame.set_index("provider").loc["apiframe"]
    assert (row["unit"], row["left"], row["plan"]) == ("credits", 10000.0, "sandbox")
    assert pd.Timestamp(row["read_at"]).tzinfo is not None
    assert got.amount("apiframe", "credits") == 10000.0
    reads = account_reads(sandbox)
    ji.imagine("a harbour", wait=True)
    assert ji.balance("apiframe").amount("apiframe", "credits") == 10000.0  # cached
    assert account_reads(sandbox) == reads
    assert ji.balance("apiframe", refresh=True).amount("apiframe", "credits") == 9996.0
    assert account_reads(sandbox) == reads + 1


def test_a_failing_or_slow_provider_shows_its_error_in_its_row(engine, sandbox, monkeypatch):
    monkeypatch.setattr(_spend, "BALANCE_TIMEOUT", 0.5)
    sandbox.faults.add("/apiframe/account", status=401, count=1)
    failed = ji.balance("apiframe").frame.iloc[0]
    assert pd.isna(failed["left"]) and "key" in failed["error"].lower()  # one line, typed
    sandbox.faults.add("/apiframe/account", kind="timeout", delay=30, count=1)
    started = time.perf_counter()
    slow = ji.balance("apiframe", refresh=True).frame.iloc[0]
    assert time.perf_counter() - started < 3
    assert "did not report its balance within 0.5 s" in slow["error"]


def test_the_estimate_agrees_with_what_the_jobs_recorded(engine):
    expected = ji.estimate(["a harbour", "a pier"], actions=["U1", "V2"]).total("apiframe")
    for prompt in ("a harbour", "a pier"):
        job = ji.imagine(prompt).wait(30)
        job.upscale(1).wait(30)
        job.vary(2).wait(30)
    df = ji.history()
    assert len(df) == 6 and set(df["cost_source"]) == {"prices"}
    assert df["cost"].sum() == expected == 20.0
