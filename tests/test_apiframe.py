"""The APIFRAME client against the sandbox: every wire test runs in-process (ASGI) and over real
HTTP on loopback (the ``over`` fixture).

Each call here is one provider method = one wire exchange; the engine's retries are not involved.
"""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT
from PIL import Image as PILImage

from jupyter_imagine.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequest,
    ModeratedPrompt,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)
from jupyter_imagine.models import GRID_ACTIONS, UPSCALE_ACTIONS, VARY_REGION, Job, Status
from jupyter_imagine.providers.apiframe import STATUS_MAP, Apiframe
from jupyter_imagine.sandbox import create_app


class Harness:
    """An Apiframe client on a sandbox, with helpers to run a task to its end."""

    def __init__(self, client: httpx.AsyncClient, base: str, state, key: str = "test-key-0001"):
        self.client = client
        self.state = state
        self.api = Apiframe(client=client, base_url=base + "/apiframe", api_key=key, sandbox=True)

    async def run(self, kind, prompt="a lighthouse at dusk", parent=None, *,
                  hold_first_poll: bool = False, **params):
        """Submit and poll to the end; with ``hold_first_poll`` the sandbox's clock stands
        still until the first poll has answered, so that poll sees the job unfinished however
        slow the machine is."""
        job = Job(provider="apiframe", kind=kind, prompt=prompt, params=params,
                  parent_id=parent.id if parent else None)
        speed = self.state.clock.speed
        if hold_first_poll:
            self.state.clock.speed = 0
        try:
            sub = await self.api.submit(job, parent)
            job.remote_id = sub.remote_id
            update = await self.api.poll(job)
        finally:
            self.state.clock.speed = speed
        statuses = [(update.status, update.progress)]
        for _ in range(400):
            if update.status.final:
                break
            await asyncio.sleep(0.005)
            update = await self.api.poll(job)
            statuses.append((update.status, update.progress))
        job.status = update.status
        job.images = update.images or []
        job.grid = update.grid
        job.raw = update.raw
        job.error = update.error
        return job, update, statuses


def run(coro):
    return asyncio.run(coro)


async def _in_process(fn, speed=1000.0):
    app = create_app(speed=speed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        return await fn(Harness(client, "http://sandbox.test", app.state.sandbox))


async def _over_loopback(fn, server):
    async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
        return await fn(Harness(client, server.url, server.state))


@pytest.fixture(params=["in-process", "loopback"])
def over(request):
    """Runs ``flow(harness)`` against the sandbox in-process (ASGI) and over real HTTP on
    loopback (a uvicorn server in a thread): every wire test below runs both ways."""
    if request.param == "in-process":
        return lambda fn: run(_in_process(fn))
    server = request.getfixturevalue("live_sandbox")
    return lambda fn: run(_over_loopback(fn, server))


@pytest.mark.parametrize("raw, status", sorted(STATUS_MAP.items()))
def test_status_table(raw, status):
    api = Apiframe(client=None, base_url="http://x", api_key="k", sandbox=True)
    assert api.map_status(raw) is status
    assert api.parse({"task_id": "t", "status": raw}).status is status


def test_status_table_covers_the_documented_strings():
    documented = {"pending", "staged", "starting", "processing", "finished", "failed", "retry",
                  "retrying"}
    assert documented <= set(STATUS_MAP)


def test_parse_tolerates_docs_examples():
    api = Apiframe(client=None, base_url="http://x", api_key="k", sandbox=True)
    # the seed's finished example has no status field and says taskId
    done = api.parse({"taskId": "t", "task_type": "reroll", "original_image_url": "g",
                      "image_urls": ["1", "2", "3", "4"]})
    assert done.status is Status.SUCCEEDED and [i.index for i in done.images] == [1, 2, 3, 4]
    assert done.grid.url == "g"
    running = api.parse({"task_id": "t", "status": "processing", "percentage": "80"})
    assert running.status is Status.RUNNING and running.progress == 80.0
    failed = api.parse({"task_id": "t", "status": "failed"})
    assert failed.status is Status.FAILED and "without a reason" in failed.error


def test_imagine_lifecycle_and_grid(over):
    async def flow(h):
        job, update, statuses = await h.run("imagine", aspect_ratio="3:2", hold_first_poll=True)
        assert update.status is Status.SUCCEEDED
        assert update.raw["status"] == "finished" and isinstance(update.raw["percentage"], str)
        assert statuses[0][0] in (Status.QUEUED, Status.RUNNING) and len(statuses) > 1
        assert len(update.images) == 4 and update.grid is not None
        grid = PILImage.open(io.BytesIO(await h.api.download(update.grid.url)))
        cell = PILImage.open(io.BytesIO(await h.api.download(update.images[0].url)))
        assert grid.size == (cell.width * 2, cell.height * 2)
        assert cell.width / cell.height == pytest.approx(1.5, rel=0.02)
        assert h.api.actions(job) == GRID_ACTIONS
        return job

    over(flow)


def test_every_grid_action_endpoint(over):
    async def flow(h):
        parent, _, _ = await h.run("imagine")
        parent.status = Status.SUCCEEDED
        up, u, _ = await h.run("upscale", parent=parent, index=2)
        assert u.status is Status.SUCCEEDED and len(u.images) == 1 and u.grid is None
        assert u.raw["task_type"] == "upscale#2" and "image_url" in u.raw
        up.status = Status.SUCCEEDED
        assert h.api.actions(up) == UPSCALE_ACTIONS and VARY_REGION in UPSCALE_ACTIONS
        _, v, _ = await h.run("variation", parent=parent, index=3)
        assert v.raw["task_type"] == "variation-3" and len(v.images) == 4
        _, r, _ = await h.run("reroll", prompt="a sunflower field", parent=parent)
        assert r.raw["task_type"] == "reroll" and len(r.images) == 4
        return up

    over(flow)


def test_inpaint_sends_a_png_data_uri_and_changes_only_the_mask(over, tmp_path):
    async def flow(h):
        parent, _, _ = await h.run("imagine")
        up, u, _ = await h.run("upscale", parent=parent, index=1)
        up.status = Status.SUCCEEDED
        source = PILImage.open(io.BytesIO(await h.api.download(u.images[0].url))).convert("RGB")
        mask = PILImage.new("L", source.size, 0)
        mask.paste(255, (10, 10, 200, 120))
        mask_path = tmp_path / "mask.png"
        mask.save(mask_path)
        _, ip, _ = await h.run("vary_region", prompt="a red balloon", parent=up,
                               mask_path=str(mask_path))
        assert ip.status is Status.SUCCEEDED and ip.raw["task_type"] == "inpaint"
        out = PILImage.open(io.BytesIO(await h.api.download(ip.images[0].url))).convert("RGB")
        assert out.size == source.size
        outside = PILImage.new("L", source.size, 255)
        outside.paste(0, (10, 10, 200, 120))
        from PIL import ImageChops

        diff = ImageChops.difference(out, source)
        assert ImageChops.multiply(diff.convert("L"), outside).getbbox() is None
        assert diff.getbbox() is not None  # something inside the mask changed

        wrong = tmp_path / "wrong.png"
        PILImage.new("L", (64, 64), 255).save(wrong)
        job = Job(provider="apiframe", kind="vary_region", prompt="x",
                  params={"mask_path": str(wrong)})
        with pytest.raises(InvalidRequest, match="(?i)mask"):
            await h.api.submit(job, up)

    over(flow)


def test_fetch_many_batches_in_order(over):
    async def flow(h):
        jobs = []
        for i in range(3):
            job = Job(provider="apiframe", kind="imagine", prompt=f"tower {i}")
            job.remote_id = (await h.api.submit(job, None)).remote_id
            jobs.append(job)
        before = sum(n for (m, p), n in h.state.requests.items() if p.endswith("/fetch-many"))
        updates = await h.api.poll_many(jobs)
        after = sum(n for (m, p), n in h.state.requests.items() if p.endswith("/fetch-many"))
        assert len(updates) == 3 and after - before == 1
        assert [u.raw["task_id"] for u in updates] == [j.remote_id for j in jobs]

    over(flow)


def test_account(over):
    async def flow(h):
        before = await h.api.account()
        await h.run("imagine")
        after = await h.api.account()
        assert set(before) >= {"email", "credits", "plan", "next_billing_date", "total_images"}
        assert after["credits"] == before["credits"] - 4

    over(flow)


def test_webhook_fields_pass_through(over):
    async def flow(h):
        job = Job(provider="apiframe", kind="imagine", prompt="a boat",
                  params={"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "whs-123"})
        sub = await h.api.submit(job, None)
        task = h.state.tasks[sub.remote_id]
        fields = task if isinstance(task, dict) else vars(task)
        text = repr(fields)
        assert "http://127.0.0.1:9/hook" in text and "whs-123" in text

    over(flow)


# ------------------------------------------------------------------ error shapes
def test_errors_map_to_typed_exceptions(over):
    async def flow(h):
        with pytest.raises(InvalidRequest, match="APIFRAME answered 400: .*prompt"):
            await h.api._send("POST", "/imagine", json={})
        with pytest.raises(ModeratedPrompt, match="(?i)banned"):
            await h.api.submit(Job(provider="apiframe", kind="imagine", prompt="gore"), None)
        job = Job(provider="apiframe", kind="imagine", prompt="x", remote_id="no-such-task")
        with pytest.raises(NotFound):
            await h.api.poll(job)
        h.state.faults.add("/apiframe/fetch", status=500)
        with pytest.raises(ServiceUnavailable, match="500") as info:
            await h.api.poll(job)
        assert info.value.reached_server
        h.state.faults.add("/apiframe/imagine", status=429, retry_after=7)
        with pytest.raises(RateLimited) as info:
            await h.api.submit(Job(provider="apiframe", kind="imagine", prompt="x"), None)
        assert info.value.retry_after == 7

    over(flow)


@pytest.mark.parametrize("key", [None, "invalid-key"])
def test_rejected_key_names_the_variable_not_the_key(over, key):
    async def flow(h):
        h.api._api_key = key
        with pytest.raises(AuthenticationError) as info:
            await h.api.account()
        assert "APIFRAME_API_KEY" in str(info.value) and "invalid-key" not in str(info.value)

    over(flow)


def test_auth_header_is_the_raw_key():
    api = Apiframe(client=None, base_url="http://x", api_key="abc-123-456", sandbox=False)
    assert api.auth_headers() == {"Authorization": "abc-123-456"}


def test_connection_refused_is_marked_as_never_reaching_the_server():
    async def flow():
        async with httpx.AsyncClient() as client:
            api = Apiframe(client=client, base_url="http://127.0.0.1:9", api_key="k", sandbox=False)
            with pytest.raises(ServiceUnavailable) as info:
                await api.submit(Job(provider="apiframe", kind="imagine", prompt="x"), None)
            assert info.value.reached_server is False

    run(flow())


def test_a_url_httpx_cannot_send_is_a_configuration_error_not_a_maybe_sent_submit():
    """A base URL with a scheme httpx does not speak never leaves the machine: the submit must
    not be reported as possibly running at the provider."""
    async def flow():
        async with httpx.AsyncClient() as client:
            api = Apiframe(client=client, base_url="htps://x", api_key="k", sandbox=False)
            with pytest.raises(ConfigurationError) as info:
                await api.submit(Job(provider="apiframe", kind="imagine", prompt="x"), None)
            assert str(info.value).startswith("cannot send a request to APIFRAME (")
            assert str(info.value).endswith("; check APIFRAME_BASE_URL")
            api = Apiframe(client=client, base_url="http://127.0.0.1:9", api_key="k",
                           sandbox=False)
            with pytest.raises(ConfigurationError, match=r"\(Invalid port.*came from APIFRAME$"):
                await api.download("http://[::1/grid.png")  # httpx.InvalidURL: no TransportError

    run(flow())


# ------------------------------------------------------------------ over real HTTP
def test_full_flow_over_loopback(live_sandbox):
    async def flow():
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
            h = Harness(client, live_sandbox.url, live_sandbox.state)
            parent, update, _ = await h.run("imagine", aspect_ratio="16:9")
            assert update.status is Status.SUCCEEDED
            assert update.grid.url.startswith(live_sandbox.url)
            data = await h.api.download(update.images[3].url)
            assert PILImage.open(io.BytesIO(data)).width > PILImage.open(io.BytesIO(data)).height
            parent.status = Status.SUCCEEDED
            _, up, _ = await h.run("upscale", parent=parent, index=4)
            assert up.status is Status.SUCCEEDED
            assert (await h.api.account())["total_images"] >= 1

    run(flow())


# ------------------------------------------------------------------ every action, end to end
UPSCALE_LABELS = [
    ("Vary (Strong)", "variation", 4), ("Vary (Subtle)", "variation", 4),
    ("Upscale (Subtle)", "upscale", 1), ("Upscale (Creative)", "upscale", 1),
    ("Upscale (2x)", "upscale", 1), ("Upscale (4x)", "upscale", 1),
    ("Zoom Out 2x", "outpaint", 4), ("Zoom Out 1.5x", "outpaint", 4),
    ("⬅️", "pan", 4), ("➡️", "pan", 4), ("⬆️", "pan", 4), ("⬇️", "pan", 4),
]


@pytest.fixture
def upscaled(engine):
    import jupyter_imagine as ji

    grid = ji.imagine("a lighthouse at dusk", aspect_ratio="3:2").wait(60)
    return grid, grid.upscale(1).wait(60)


def test_every_upscale_action_through_the_engine(upscaled):
    _, up = upscaled
    assert [label for label, _, _ in UPSCALE_LABELS] == [
        a for a in up.actions if a != "Vary (Region)"
    ]
    children = {label: up.act(label) for label, _, _ in UPSCALE_LABELS}  # all in flight at once
    w, h = up.images[0].width, up.images[0].height
    for label, kind, n_images in UPSCALE_LABELS:
        child = children[label].wait(30)
        assert child.kind == kind and child.action == label and child.parent_id == up.id
        assert len(child.images) == n_images and all(i.path for i in child.images)
        first = child.images[0]
        if label == "Upscale (2x)":
            assert (first.width, first.height) == (2 * w, 2 * h)
        if label == "Upscale (4x)":
            assert (first.width, first.height) == (4 * w, 4 * h)
        if label in ("⬅️", "➡️"):
            assert first.width / first.height > w / h  # the picture grew sideways
        if label in ("⬆️", "⬇️"):
            assert first.width / first.height < w / h
        if n_images == 4:
            assert child.actions[:4] == ("U1", "U2", "U3", "U4")


def test_custom_zoom_and_bad_arguments(upscaled):
    import jupyter_imagine as ji

    grid, up = upscaled
    assert grid.act(" u2 ").action == "U2"  # a label as typed: any case, spaces around
    for label in ("U1", "V2"):  # /upscale-1x and /variations send no prompt: never dropped
        with pytest.raises(ji.InvalidRequest, match=f"^{label} takes no prompt argument$"):
            grid.act(label, prompt="a sunflower field")
    with pytest.raises(ji.InvalidRequest, match="^the new prompt must be text, not int$"):
        grid.act("🔄", prompt=42)
    assert up.act("Zoom Out 2x", zoom_ratio=1.2).wait(60).params["zoom_ratio"] == 1.2
    with pytest.raises(ji.InvalidRequest, match="zoom_ratio must be between 1 and 2"):
        up.act("Zoom Out 2x", zoom_ratio=3)
    with pytest.raises(ji.InvalidRequest, match="takes no prompt"):
        up.act("Upscale (2x)", prompt="bigger")
    with pytest.raises(ji.InvalidRequest, match="takes no nope"):
        up.act("⬅️", nope=1)


def test_python_api_functions(engine, upscaled):
    import jupyter_imagine as ji

    grid, up = upscaled
    mj = ji.client("apiframe")
    described = mj.describe(up, wait=True)
    assert described.kind == "describe" and len(described.extras["prompts"]) == 4
    assert described.images == []
    blended = mj.blend([grid.images[0], up.images[0].url], dimension="landscape", wait=True)
    assert blended.kind == "blend" and len(blended.images) == 4
    assert blended.images[0].width > blended.images[0].height
    value = mj.seed(grid)
    assert value.isdigit() and grid.extras["seed"] == value
    assert mj.seed(grid.id) == value  # by id too
    with pytest.raises(ji.InvalidRequest, match="^seed\\(\\) takes a job or a job id, not int$"):
        mj.seed(42)
    with pytest.raises(ji.InvalidRequest, match=r"^seed\(\) of TheNextLeg takes one of its own"):
        ji.client("thenextleg").seed(grid)
    assert engine.store.get(grid.id)["extras"]["seed"] == value  # stored, not just shown
    swapped = mj.faceswap(grid.images[1], grid.images[2], wait=True)
    assert swapped.kind == "faceswap" and len(swapped.images) == 1
    big = mj.upscale(grid.images[3], factor=4, wait=True)
    assert big.images[0].width == 4 * grid.images[3].width
    account = mj.account()
    assert account["plan"] == "sandbox" and account["credits"] < 10000
    with pytest.raises(ji.InvalidRequest, match="2 to 5 image URLs"):
        mj.blend([grid.images[0]])
    with pytest.raises(ji.InvalidRequest, match="public http"):
        mj.describe("/tmp/local.png")


def test_webhook_delivered_with_secret(engine, sandbox):
    import jupyter_imagine as ji
    from jupyter_imagine._config import IN_PROCESS_ROOT

    hook = IN_PROCESS_ROOT + "/_sandbox/webhook-sink/apiframe"
    job = ji.imagine("a kite", webhook_url=hook, webhook_secret="whs-777-abc").wait(60)
    deadline = __import__("time").monotonic() + 5
    while not any(w["body"].get("status") == "finished" for w in sandbox.webhooks):
        assert __import__("time").monotonic() < deadline, sandbox.webhooks
        __import__("time").sleep(0.02)
    finished = next(w for w in sandbox.webhooks if w["body"].get("status") == "finished")
    assert finished["headers"]["x-webhook-secret"] == "whs-777-abc"
    assert finished["body"]["task_id"] == job.remote_id
    assert len(sandbox.webhooks) > 1  # progress updates too, not only the result


# ------------------------------------------------------------------ payload shapes (hypothesis)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_API = Apiframe(client=None, base_url="http://x", api_key="k", sandbox=True)
_percent = st.one_of(
    st.integers(0, 100), st.integers(0, 100).map(str), st.floats(0, 100).map(lambda f: f"{f:.1f}"),
    st.none(), st.just(""),
)


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from(sorted(STATUS_MAP)), percentage=_percent,
       id_key=st.sampled_from(["task_id", "taskId"]))
def test_parse_any_progress_shape(status, percentage, id_key):
    body = {id_key: "t", "task_type": "imagine", "status": status}
    if percentage is not None:
        body["percentage"] = percentage
    update = _API.parse(body)
    assert update.status is STATUS_MAP[status]
    if update.progress is not None:
        assert 0 <= update.progress <= 100
    if update.status is Status.SUCCEEDED:
        assert update.progress == 100


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 4), grid=st.booleans(), with_status=st.booleans(),
       kind=st.sampled_from(["imagine", "reroll", "upscale#1", "variation-2", "faceswap",
                             "outpaint-2", "pan-left", "blend", "inpaint"]))
def test_parse_any_finished_shape(n, grid, with_status, kind):
    urls = [f"https://cdn.example/{i}.png" for i in range(n)]
    body = {"task_id": "t", "task_type": kind}
    body.update({"image_urls": urls} if n > 1 else {"image_url": urls[0]})
    if grid:
        body["original_image_url"] = "https://cdn.example/grid.png"
    if with_status:
        body["status"] = "finished"
    update = _API.parse(body)
    assert update.status is Status.SUCCEEDED
    assert [i.url for i in update.images] == urls
    assert (update.grid is not None) == grid


# ------------------------------------------------------------------ spend
@pytest.mark.parametrize("kind, params, amount", [
    ("imagine", {}, 4), ("reroll", {}, 4), ("blend", {}, 4), ("variation", {}, 4),
    ("vary_region", {}, 4), ("outpaint", {}, 4), ("pan", {}, 4), ("upscale", {}, 2),
    ("describe", {}, 2), ("seed", {}, 2), ("faceswap", {}, 2),
    ("upscale", {"type": "2x"}, 1), ("upscale", {"type": "4x"}, 2),
    ("upscale", {"type": "subtle"}, 4), ("upscale", {"type": "creative"}, 4),
    ("upscale", {"mode": "2x"}, 1), ("upscale", {"mode": "creative"}, 4),  # the actions
    ("variation", {"process_mode": "turbo"}, None), ("imagine", {"process_mode": "turbo"}, 4),
    ("webhook", {}, None),
])
def test_price_follows_the_published_credit_table(kind, params, amount):
    from jupyter_imagine.models import Cost

    expected = None if amount is None else Cost(amount, "credits", "prices")
    assert Apiframe.price(kind, params) == expected
    record = {"kind": kind, "params": params, "raw": {}, "extras": {}, "status": "succeeded"}
    assert Apiframe.cost(record) == expected
    assert Apiframe.cost({**record, "status": "failed"}) is None  # charging unknown: NA


def test_a_cost_the_payload_states_wins_even_for_a_failed_job():
    from jupyter_imagine.models import Cost

    record = {"kind": "imagine", "params": {}, "raw": {"credits_used": "3"}, "status": "failed"}
    assert Apiframe.cost(record) == Cost(3, "credits", "provider")


def test_balance_reads_account_credits_and_plan(over):
    async def flow(h):
        before = await h.api.balance()
        await h.run("imagine")
        return before, await h.api.balance()

    before, after = over(flow)
    assert before.amounts == {"credits": 10000.0} and before.plan == "sandbox"
    assert before.resets_at is None and after.amounts == {"credits": 9996.0}
    assert after.read_at >= before.read_at
