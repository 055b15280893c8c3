"""The sandbox's accounts (``sandbox/_accounts.py``) and what the provider clients make of them:
costs, balances and out-of-credits answers, over real HTTP against the served sandbox on
loopback (the ``live_sandbox`` fixture), plus the in-process helpers and the start setting.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timezone
from pathlib import Path

import httpx
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT

from jupyter_imagine import _config, sandbox
from jupyter_imagine.errors import ConfigurationError, QuotaExceeded, RateLimited
from jupyter_imagine.models import Balance, Cost, Job
from jupyter_imagine.providers.apiframe import Apiframe
from jupyter_imagine.providers.banatie import Banatie
from jupyter_imagine.providers.blockade import Blockade
from jupyter_imagine.providers.neuroflash import Neuroflash
from jupyter_imagine.providers.thenextleg import TheNextLeg
from jupyter_imagine.sandbox import _accounts, create_app

CLASSES = {"apiframe": Apiframe, "thenextleg": TheNextLeg, "neuroflash": Neuroflash,
           "banatie": Banatie, "blockade": Blockade}
KEYS = {"banatie": "bnt_accounts-test-key", "neuroflash": "sandbox-key"}


@pytest.fixture(autouse=True)
def _no_overrides():
    _config.set_price_overrides(None)
    _accounts._PENDING.clear()
    yield
    _config.set_price_overrides(None)
    _accounts._PENDING.clear()


def client_for(name: str, http: httpx.AsyncClient, url: str):
    cls = CLASSES[name]
    return cls(client=http, base_url=url + cls.sandbox_prefix,
               api_key=KEYS.get(name, "accounts-test-key"), sandbox=True)


async def finish(api, kind: str = "imagine", prompt: str = "a lighthouse at dusk",
                 parent: Job | None = None, **params) -> Job:
    """Submit one job and poll it to its end (no retries), like the engine."""
    job = Job(provider=api.name, kind=api.job_kind(kind), prompt=prompt, params=params,
              parent_id=parent.id if parent else None)
    submission = await api.submit(job, parent)
    job.remote_id = submission.remote_id
    update = submission.update
    for _ in range(3000):
        if update is not None and update.status.final:
            break
        await asyncio.sleep(0.003)
        update = await api.poll(job)
    job.status, job.raw, job.extras = update.status, update.raw, dict(update.extras)
    job.images, job.grid = update.images or [], update.grid
    job.error, job.error_type = update.error, update.error_type
    return job


async def child_of(api, parent: Job, label: str, **kwargs) -> Job:
    spec = api.child(parent, label, **kwargs)
    job = Job(provider=api.name, kind=spec.kind, prompt=spec.prompt, params=spec.params,
              parent_id=parent.id, action=label)
    submission = await api.submit(job, parent)
    job.remote_id = submission.remote_id
    update = submission.update
    for _ in range(3000):
        if update is not None and update.status.final:
            break
        await asyncio.sleep(0.003)
        update = await api.poll(job)
    job.status, job.raw, job.extras = update.status, update.raw, dict(update.extras)
    job.images, job.grid, job.error = update.images or [], update.grid, update.error
    return job


def served(server, flow):
    async def go():
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as http:
            return await flow(http, server.url)

    return asyncio.run(go())


def control(server, **body) -> dict:
    response = httpx.post(server.url + "/_sandbox/balance", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# ------------------------------------------------------------------ cost == price, balance drops
@pytest.mark.parametrize("name, kind, label, unit, each", [
    ("apiframe", "imagine", "U1", "credits", (4.0, 2.0)),
    ("neuroflash", "imagine", None, "images", (1.0,)),
    ("banatie", "imagine", None, "requests", (1.0,)),
])
def test_recorded_cost_is_the_price_and_the_balance_drops_by_it(
    live_sandbox, name, kind, label, unit, each
):
    async def flow(http, url):
        api = client_for(name, http, url)
        before = await api.balance()
        job = await finish(api, kind)
        jobs = [job] + ([await child_of(api, job, label)] if label else [])
        after = await api.balance()
        return before, jobs, after

    before, jobs, after = served(live_sandbox, flow)
    cls = CLASSES[name]
    assert isinstance(before, Balance) and before.provider == name
    assert before.read_at.tzinfo is timezone.utc and unit in before.amounts
    for job, amount in zip(jobs, each, strict=True):
        assert job.status.value == "succeeded", job.error
        cost, price = cls.cost(job.to_record()), cls.price(job.kind, job.params)
        assert (cost.amount, cost.unit) == (price.amount, price.unit) == (amount, unit)
        # neuroflash's answer lists the images it made: the provider's own figure.
        assert cost.source == ("provider" if name == "neuroflash" else "prices")
    # Banatie's first balance read is one request, counted before its figure is read.
    assert before.amounts[unit] - after.amounts[unit] == sum(each)


#: Per provider: (parent label path, action label, kwargs) of every priced action tried.
ACTIONS = {
    "apiframe": [((), "U1", {}), ((), "V1", {}), ((), "🔄", {}), (("U1",), "Upscale (2x)", {}),
                 (("U1",), "Upscale (4x)", {}), (("U1",), "Upscale (Subtle)", {}),
                 (("U1",), "Upscale (Creative)", {}), (("U1",), "Vary (Strong)", {}),
                 (("U1",), "Zoom Out 2x", {}), (("U1",), "⬅️", {})],
    "neuroflash": [((), "Edit", {"prompt": "at night"}), ((), "Upscale", {})],
    "banatie": [((), "Regenerate", {})],
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_action_pays_its_price(live_sandbox, name):
    """Each action's recorded cost equals its price, and the account drops by exactly it."""
    cls = CLASSES[name]

    async def flow(http, url):
        api = client_for(name, http, url)
        root = await finish(api)
        parents: dict[tuple[str, ...], Job] = {(): root}
        seen = []
        for path, label, kwargs in ACTIONS[name]:
            if path not in parents:
                parents[path] = await child_of(api, parents[path[:-1]], path[-1])
            before = (await api.balance()).amounts[cls.PRICE_UNIT]
            job = await child_of(api, parents[path], label, **kwargs)
            after = (await api.balance()).amounts[cls.PRICE_UNIT]
            seen.append((label, job, before - after))
        return seen

    for label, job, spent in served(live_sandbox, flow):
        assert job.status.value == "succeeded", (label, job.error)
        cost, price = cls.cost(job.to_record()), cls.price(job.kind, job.params)
        assert cost is not None and price is not None, label
        assert cost.amount == price.amount == spent, (label, cost, price, spent)


def test_thenextleg_balance_reads_fast_time_and_drops_by_a_gpu_minute(live_sandbox):
    async def flow(http, url):
        api = client_for("thenextleg", http, url)
        before = await api.balance()
        job = await finish(api, "imagine", "a lighthouse at dusk")
        return before, job, await api.balance()

    before, job, after = served(live_sandbox, flow)
    assert before.amounts == {"fast_seconds": pytest.approx(15 * 3600)}
    assert before.limits == {"fast_seconds": pytest.approx(15 * 3600)}
    assert before.plan == "Standard" and before.resets_at is not None
    spent = before.amounts["fast_seconds"] - after.amounts["fast_seconds"]
    assert spent == pytest.approx(60, abs=36)  # /info shows hours to two decimals
    # Nothing published prices a Midjourney job: NA, not a guess; the user may price it.
    assert TheNextLeg.cost(job.to_record()) is None and TheNextLeg.price("imagine", {}) is None
    _config.set_price_overrides({"thenextleg": {"imagine": 60}})
    assert TheNextLeg.cost(job.to_record()) == Cost(60, "fast_seconds", "prices")


def test_blockade_reports_no_balance_and_prices_only_model4_variants(live_sandbox):
    async def flow(http, url):
        api = client_for("blockade", http, url)
        return await api.balance()

    assert served(live_sandbox, flow) is None
    assert Blockade.price("skybox", {}) is None
    assert Blockade.price("imagine", {"variant_id": "Enhanced"}) == Cost(6, "credits", "prices")
    record = {"kind": "skybox", "params": {}, "status": "succeeded",
              "raw": {"variant_name": "Model 4 Standard"}, "extras": {}}
    assert Blockade.cost(record) == Cost(3, "credits", "prices")


# ------------------------------------------------------------------ out of credits, top up
def test_apiframe_out_of_credits_then_top_up(live_sandbox):
    assert control(live_sandbox, provider="apiframe", amount=5)["amount"] == 5

    async def flow(http, url):
        api = client_for("apiframe", http, url)
        first = await finish(api)
        with pytest.raises(QuotaExceeded) as refused:
            await finish(api)
        control(live_sandbox, provider="apiframe", add=4)
        again = await finish(api)
        return first, refused.value, again, await api.balance()

    first, refused, again, balance = served(live_sandbox, flow)
    assert first.status.value == "succeeded" and again.status.value == "succeeded"
    text = str(refused)
    assert "Not enough credits" in text and "dashboard" in text and "\n" not in text
    assert refused.provider == "apiframe" and balance.amounts == {"credits": 1.0}


def test_thenextleg_no_fast_hours_then_top_up(live_sandbox):
    control(live_sandbox, provider="thenextleg", amount=60)  # one GPU minute: one grid

    async def flow(http, url):
        api = client_for("thenextleg", http, url)
        first = await finish(api, "imagine", "a red fox")
        broke = await finish(api, "imagine", "a blue fox")
        control(live_sandbox, provider="thenextleg", add=120)
        again = await finish(api, "imagine", "a green fox")
        return first, broke, again

    first, broke, again = served(live_sandbox, flow)
    assert first.status.value == "succeeded" and again.status.value == "succeeded"
    assert (broke.status.value, broke.error_type) == ("failed", "QuotaExceeded")
    assert broke.error.startswith("You've ran out of fast hours;") and "relax" in broke.error
    assert "\n" not in broke.error


def test_neuroflash_quota_exhausted_then_top_up(live_sandbox):
    control(live_sandbox, provider="neuroflash", amount=1)

    async def flow(http, url):
        api = client_for("neuroflash", http, url)
        first = await finish(api)
        with pytest.raises(QuotaExceeded) as refused:
            await finish(api)
        control(live_sandbox, provider="neuroflash", add=2)
        again = await finish(api)
        return first, refused.value, again, await api.balance()

    first, refused, again, balance = served(live_sandbox, flow)
    assert first.status.value == "succeeded" and again.status.value == "succeeded"
    assert "quota" in str(refused) and "midnight UTC" in str(refused)
    assert "\n" not in str(refused)
    assert balance.amounts["images"] == 1.0 and balance.resets_at is not None


def test_banatie_out_of_requests_is_rate_limited_then_top_up(live_sandbox):
    control(live_sandbox, provider="banatie", amount=1)

    async def flow(http, url):
        api = client_for("banatie", http, url)
        first = await finish(api)
        # A client that knows the window is used up waits for its reset; a fresh one (knowing
        # nothing yet) is answered 429.
        api._buckets["api"].remaining = None
        with pytest.raises(RateLimited) as refused:
            await finish(api)
        control(live_sandbox, provider="banatie", amount=10)
        api._buckets["api"].remaining = None
        again = await finish(api)
        return first, refused.value, again, await api.balance()

    first, refused, again, balance = served(live_sandbox, flow)
    assert first.status.value == "succeeded" and again.status.value == "succeeded"
    assert refused.retry_after is not None and refused.retry_after > 0
    assert balance.amounts == {"requests": 9.0} and balance.limits == {"requests": 10.0}


# ------------------------------------------------------------------ the control route
def test_control_route_lists_sets_and_refuses(live_sandbox):
    listed = httpx.get(live_sandbox.url + "/_sandbox/balance").json()["balances"]
    assert {b["provider"]: b["unit"] for b in listed} == {
        "apiframe": "credits", "thenextleg": "fast_seconds", "neuroflash": "images",
        "banatie": "requests"}
    assert control(live_sandbox, provider="apiframe", amount=12.5)["amount"] == 12.5
    assert control(live_sandbox, provider="apiframe", add=0.5)["amount"] == 13
    for body in (b'{"provider": "blockade", "amount": 1}',
                 b'{"provider": "apiframe", "amount": -1}', b'{"provider": "apiframe"}',
                 b'{"provider": "apiframe", "amount": 1, "add": 1}',
                 b'{"provider": "apiframe", "amount": 1e999}', b'[1]'):
        answer = httpx.post(live_sandbox.url + "/_sandbox/balance", content=body)
        assert answer.status_code == 400 and answer.json()["error"], body
    assert control(live_sandbox, provider="apiframe", add=0)["amount"] == 13


def test_control_route_is_behind_the_control_guard():
    from jupyter_imagine.sandbox._middleware import ControlPolicy

    app = create_app(control=ControlPolicy(enabled=False))

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://sb") as http:
            return await http.post("/_sandbox/balance", json={"provider": "apiframe", "amount": 0})

    assert asyncio.run(go()).status_code in (403, 404)
    assert app.state.sandbox.providers["apiframe"].credits == 10000


# ------------------------------------------------------------------ in-process helpers, start
def test_python_helpers_reach_the_in_process_sandbox():
    app = create_app()
    emulators = app.state.sandbox.providers
    sandbox.set_balance("apiframe", 8)
    sandbox.top_up("apiframe", 2)
    assert sandbox.balance("apiframe") == 10 == emulators["apiframe"].credits
    sandbox.set_balance("neuroflash", 3)
    assert emulators["neuroflash"].quotas["images"].to_wire()["availableAmount"] == 3
    sandbox.set_balance("thenextleg", 7200)
    assert emulators["thenextleg"].account("any-token").fast_hours == pytest.approx(2)
    with pytest.raises(ConfigurationError, match="blockade reports no balance"):
        sandbox.set_balance("blockade", 1)
    with pytest.raises(ConfigurationError, match=">= 0"):
        sandbox.top_up("apiframe", -3)


def test_a_balance_set_before_any_sandbox_starts_the_next_one():
    # A fresh process: here other tests' in-process sandboxes may still be alive.
    script = (
        "from jupyter_imagine import sandbox\n"
        "from jupyter_imagine.sandbox import create_app\n"
        "sandbox.set_balance('apiframe', 6)\n"
        "assert sandbox.balance('apiframe') == 6\n"
        "print(create_app().state.sandbox.providers['apiframe'].credits)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != _accounts.BALANCE_ENV}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"


def test_start_setting_low_and_number(monkeypatch):
    monkeypatch.setenv(_accounts.BALANCE_ENV, "low")
    low = create_app().state.sandbox
    assert {n: _accounts.read(low, n)["amount"] for n in _accounts.ACCOUNTS} == {
        "apiframe": 8, "thenextleg": 120, "neuroflash": 2, "banatie": 5}
    monkeypatch.setenv(_accounts.BALANCE_ENV, "40")
    assert _accounts.read(create_app().state.sandbox, "apiframe")["amount"] == 40
    monkeypatch.setenv(_accounts.BALANCE_ENV, "plenty")
    assert create_app().state.sandbox.providers["apiframe"].credits == 10000  # logged, ignored


def test_a_restart_keeps_the_balance_unless_the_setting_changed(tmp_path, monkeypatch):
    monkeypatch.setenv(_accounts.BALANCE_ENV, "low")
    first = create_app(state_dir=tmp_path)
    assert first.state.sandbox.providers["apiframe"].credits == 8
    sandbox.set_balance("apiframe", 3)  # saved at once: no request needed
    sandbox.set_balance("thenextleg", 30)
    del first
    again = create_app(state_dir=tmp_path).state.sandbox  # same setting: the saved balance
    assert _accounts.read(again, "apiframe")["amount"] == 3
    assert _accounts.read(again, "thenextleg")["amount"] == pytest.approx(30)
    del again
    monkeypatch.setenv(_accounts.BALANCE_ENV, "50")  # a new setting starts the accounts anew
    changed = create_app(state_dir=tmp_path).state.sandbox
    assert _accounts.read(changed, "apiframe")["amount"] == 50
    del changed
    monkeypatch.delenv(_accounts.BALANCE_ENV)  # unset: the saved balance stays
    assert create_app(state_dir=tmp_path).state.sandbox.providers["apiframe"].credits == 50
