"""The TheNextLeg client: its code table, its error mapping, its parsing of every payload shape
(property-based), every endpoint against the sandbox in-process and over real HTTP on loopback,
and the button flow end to end through the engine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from datetime import datetime, timezone
from typing import Any

import httpx
import numpy as np
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

import jupyter_imagine as ji
from jupyter_imagine.errors import (
    ActionNotAvailable,
    AuthenticationError,
    InvalidMask,
    InvalidRequest,
    JobFailed,
    ModeratedPrompt,
    NotFound,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from jupyter_imagine.models import GRID_ACTIONS, REROLL, VARY_REGION, Job, Status
from jupyter_imagine.providers import PROVIDERS
from jupyter_imagine.providers.thenextleg import (
    CODES,
    LABEL_KINDS,
    STATUS_MAP,
    TheNextLeg,
    content_code,
    tnl_button_label,
    unified_label,
)
from jupyter_imagine.sandbox import _thenextleg as emulation
from jupyter_imagine.sandbox import create_app

KEY = "tnl-test-key-0001"
SEED_CODES = {
    "ALREADY_REQUESTED_UPSCALE", "BOT_TOOK_TOO_LONG_TO_PROCESS_YOUR_COMMAND", "APPEAL_ACCEPTED",
    "APPEAL_REJECTED", "BANNED_PROMPT", "BLOCKED", "BUTTON_NOT_FOUND",
    "FAILED_TO_PROCESS_YOUR_COMMAND", "FAILED_TO_REQUEST", "IMAGE_BLOCKED", "INTERNAL_ERROR",
    "INVALID_LINK", "INVALID_PARAMETER", "JOB_ACTION_RESTRICTED", "JOB_QUEUED",
    "MODERATION_OUTAGE", "NO_FAST_HOURS", "PLEASE_SUBSCRIBE_TO_MJ_IN_YOUR_DASHBOARD", "QUEUE_FULL",
}
UPSCALE_BUTTONS = [
    "Vary (Strong)", "Vary (Subtle)", "🖌️ Vary (Region)", "Upscale (2x)", "Upscale (4x)",
    "Upscale (Subtle)", "Upscale (Creative)", "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom",
    "Make Square", "⬅️", "➡️", "⬆️", "⬇️",
]
GRID_BUTTONS = ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]


def offline() -> TheNextLeg:
    return TheNextLeg(client=None, base_url="http://x", api_key=KEY, sandbox=True)


def succeeded(buttons: list[str], **fields: Any) -> Job:
    job = Job(provider="thenextleg", kind="imagine", prompt="a cat", status=Status.SUCCEEDED,
              remote_id="m1", **fields)
    job.extras = {"buttons": buttons, "button_message_id": "b1"}
    return job


# ============================================================================ the code table
@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_maps_to_its_status_error_and_words(code):
    api, outcome = offline(), CODES[code]
    assert api.map_status(code) is outcome.status
    if code == "incomplete":
        forms = [{"progress": "incomplete"}, {"progress": "INCOMPLETE "}]
    else:
        forms = [
            {"progress": 100, "response": {"content": code, "type": "imagine", "buttons": []}},
            {"content": code, "originatingMessageId": "m1"},  # the docs' flat form
            {"progress": 100, "response": {"content": f"{code}: more words"}},
            {"progress": 100, "response": {"content": outcome.text}},  # words instead of code
        ]
    for body in forms:
        update = api.parse(body, kind="imagine")
        assert update.status is outcome.status, body
        final = outcome.status is Status.FAILED
        assert update.extras["code" if final else "note"] == code
        if final:
            assert update.error == outcome.message and update.error.startswith(outcome.text)
            assert update.error_type == outcome.error.__name__
        else:
            assert update.error is None and update.error_type is None


def test_the_table_is_the_seed_list_with_these_mappings():
    assert set(CODES) - {"incomplete"} == SEED_CODES == emulation.CODES
    assert {c.lower() for c in CODES} == set(STATUS_MAP)
    expected = {
        "QUEUE_FULL": RateLimited,
        "NO_FAST_HOURS": QuotaExceeded,
        "ALREADY_REQUESTED_UPSCALE": InvalidRequest,
        "INVALID_PARAMETER": InvalidRequest,
        "MODERATION_OUTAGE": ServiceUnavailable,
        "BANNED_PROMPT": ModeratedPrompt,
        "BUTTON_NOT_FOUND": ActionNotAvailable,
        "JOB_ACTION_RESTRICTED": PermissionDenied,
        "incomplete": JobFailed,
    }
    for code, cls in expected.items():
        assert CODES[code].error is cls, code
    assert CODES["JOB_QUEUED"].status is Status.QUEUED
    assert CODES["APPEAL_ACCEPTED"].status is Status.RUNNING
    assert CODES["QUEUE_FULL"].text == "Queue full"
    assert CODES["BANNED_PROMPT"].text == "You can't use this prompt"
    assert all("Redacted" not in o.text for o in CODES.values())


def test_content_codes_are_read_strictly():
    assert content_code("QUEUE_FULL") == "QUEUE_FULL"
    assert content_code("  QUEUE_FULL: try later") == "QUEUE_FULL"
    assert content_code("Queue full.") == "QUEUE_FULL"
    for text in ("NASA rocket at dawn", "a QUEUE_FULL of cats", "incomplete", "", None, 3):
        assert content_code(text) is None
    # a code in the content of a result with images is just a prompt
    update = offline().parse({"progress": 100, "response": {
        "content": "QUEUE_FULL", "imageUrl": "http://x/g.png", "buttons": ["U1"]}})
    assert update.status is Status.SUCCEEDED


def test_incomplete_is_a_failed_job_not_a_timeout():
    update = offline().parse({"progress": "incomplete"})
    assert update.status is Status.FAILED
    assert "incomplete" in update.error and "expire" in update.error
    assert update.error_type == "JobFailed"


# ============================================================================ HTTP errors
def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> TheNextLeg:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (dict, list)):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=body, headers=headers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return TheNextLeg(client=client, base_url="http://tnl.test", api_key=KEY, sandbox=False)


@pytest.mark.parametrize(
    "status, body, cls, words",
    [
        (400, {"success": False, "msg": "Invalid phrase: 'gore'"}, ModeratedPrompt, "Invalid phr"),
        (401, {"success": False, "msg": "Unauthorized"}, AuthenticationError, "THENEXTLEG_API_KEY"),
        (401, {}, AuthenticationError, "THENEXTLEG_API_KEY"),
        (403, {"success": False, "msg": "Forbidden"}, PermissionDenied, "Forbidden"),
        (404, {"success": False, "msg": "Message not found"}, NotFound, "not found"),
        (429, {"success": False, "msg": "Too many requests"}, RateLimited, "429"),
        (500, {}, ServiceUnavailable, "500"),
        (503, "<html>down</html>", ServiceUnavailable, "503"),
        (400, {"success": False, "msg": "QUEUE_FULL"}, RateLimited, "QUEUE_FULL"),
        (402, {"success": False, "error": "NO_FAST_HOURS"}, QuotaExceeded, "NO_FAST_HOURS"),
        (400, {"success": False, "msg": "BANNED_PROMPT"}, ModeratedPrompt, "BANNED"),
        (400, {"success": False, "msg": "Mask size 1x1 does not match the image size 2x2"},
         InvalidMask, "Mask size"),
        (400, {"success": False, "msg": "msg is required"}, InvalidRequest, "msg is required"),
        (200, {"success": False, "msg": "QUEUE_FULL"}, RateLimited, "Queue full"),
        (200, {"success": False, "msg": "Invalid phrase: 'x'"}, ModeratedPrompt, "Invalid"),
        (200, {"success": False}, InvalidRequest, "refused"),
        (200, {"success": True}, ProviderError, "no messageId"),
        (200, "not json", ProviderError, "not JSON"),
    ],
)
def test_error_answers_map_to_typed_exceptions(status, body, cls, words):
    async def flow():
        api = _answer(status, body, {"Retry-After": "7"} if status == 429 else None)
        with pytest.raises(cls, match=words) as info:
            await api.submit(Job(provider="thenextleg", kind="imagine", prompt="x"), None)
        assert type(info.value) is cls
        assert KEY not in str(info.value)
        if cls is RateLimited and status == 429:
            assert info.value.retry_after == 7

    asyncio.run(flow())


def test_auth_header_is_bearer():
    assert offline().auth_headers() == {"Authorization": f"Bearer {KEY}"}
    assert TheNextLeg(client=None, base_url="x", api_key=None, sandbox=True).auth_headers() == {}
    assert PROVIDERS["thenextleg"] is TheNextLeg
    assert set(TheNextLeg.kinds) >= {"imagine", "describe", "blend", "seed", "info"}
    assert TheNextLeg.default_base_url == "https://api.thenextleg.io"
    assert TheNextLeg.sandbox_prefix == "/thenextleg" and TheNextLeg.expire_mins == 12


def test_validate_per_kind():
    api = offline()
    assert api.validate("imagine", "a cat", {"ignore_prefilter": "true", "expire_mins": "5",
                                             "ref": "r", "webhook_override": "http://h"}) == {
        "ignore_prefilter": True, "expire_mins": 5, "ref": "r", "webhook_override": "http://h"}
    with pytest.raises(InvalidRequest, match="empty"):
        api.validate("imagine", "  ", {})
    with pytest.raises(InvalidRequest, match="url"):
        api.validate("imagine", "a cat", {"url": "http://x"})
    with pytest.raises(InvalidRequest, match="expire_mins"):
        api.validate("imagine", "a cat", {"expire_mins": 0})
    for value, shown in [("0", "'0'"), (0.0, "0.0"), (-3, "-3")]:
        with pytest.raises(InvalidRequest) as low:
            api.validate("imagine", "a cat", {"expire_mins": value})
        assert str(low.value) == (
            f"thenextleg parameter 'expire_mins' must be at least 1, not {shown}")
    with pytest.raises(InvalidRequest) as fraction:  # was truncated to 2 and sent
        api.validate("imagine", "a cat", {"expire_mins": 2.5})
    assert str(fraction.value) == "thenextleg parameter 'expire_mins' must be int, not 2.5"
    assert api.validate("imagine", "a cat", {"expire_mins": 3.0})["expire_mins"] == 3
    assert api.validate("describe", "http://x/a.png", {}) == {"url": "http://x/a.png"}
    with pytest.raises(InvalidRequest, match="http"):
        api.validate("describe", "not a url", {})
    with pytest.raises(InvalidRequest) as refused:
        api.validate("live", "a cat", {})
    assert str(refused.value) == (
        "TheNextLeg cannot start a 'live' job; it can: imagine, describe, blend, seed, info"
    )
    assert refused.value.provider == "thenextleg"
    assert api.validate("blend", "http://x/1.png, http://x/2.png", {})["urls"] == [
        "http://x/1.png", "http://x/2.png"]
    with pytest.raises(InvalidRequest, match="2 to 5"):
        api.validate("blend", "", {"urls": ["http://x/1.png"]})
    assert api.validate("seed", "", {}) == {} and api.validate("info", "", {}) == {}


# ============================================================================ labels
@pytest.mark.parametrize(
    "button, label",
    [
        ("🖌️ Vary (Region)", VARY_REGION), ("🖌 Vary (Region)", VARY_REGION),
        ("Vary (Region)", VARY_REGION), ("🪄 Vary (Strong)", "Vary (Strong)"),
        ("Vary (Subtle)", "Vary (Subtle)"), ("🔍 Zoom Out 2x", "Zoom Out 2x"),
        ("Zoom Out 1.5x", "Zoom Out 1.5x"), ("🔍 Custom Zoom", "Custom Zoom"),
        ("↔️ Make Square", "Make Square"), ("⬅", "⬅️"), ("⬅️", "⬅️"), ("➡️", "➡️"),
        ("⬆️", "⬆️"), ("⬇", "⬇️"), ("🔄", REROLL), ("U1", "U1"), ("V4", "V4"),
        ("Upscale (2x)", "Upscale (2x)"), ("Upscale (Creative)", "Upscale (Creative)"),
        ("❤️", None), ("Web", None), ("", None), (None, None),
    ],
)
def test_unified_labels(button, label):
    assert unified_label(button) == label
    if label is not None:
        assert tnl_button_label(label, [button]) == button


def test_actions_come_from_the_buttons_list_and_map_back_to_its_text():
    api = offline()
    job = succeeded(["U2", "🖌️ Vary (Region)", "Web", "⬅️", "❤️", "🔄"])
    assert api.actions(job) == ("U2", VARY_REGION, "⬅️", REROLL)
    assert api.actions(succeeded([])) == ()
    assert api.actions(succeeded(GRID_BUTTONS)) == GRID_ACTIONS
    running = succeeded(GRID_BUTTONS)
    running.status = Status.RUNNING
    assert api.actions(running) == ()
    spec = api.child(job, "U2")
    assert (spec.kind, spec.params["button"], spec.params["index"]) == ("upscale", "U2", 2)
    assert api.child(job, "⬅️").kind == "pan"
    reroll = api.child(job, REROLL, prompt="a dog")
    assert reroll.prompt == "a dog" and reroll.params["send_prompt"] is True
    with pytest.raises(ActionNotAvailable, match="U1"):
        api.child(job, "U1")
    with pytest.raises(InvalidRequest, match="prompt"):
        api.child(job, "U2", prompt="a dog")
    job.images = [ji.Image(url="u", width=4, height=2)]
    mask = np.zeros((2, 4), bool)
    mask[0, 0] = True
    region = api.child(job, VARY_REGION, mask=mask, prompt="a hat")
    assert region.params["button"] == "🖌️ Vary (Region)" and region.files["mask"][:4] == \
        b"\x89PNG"
    with pytest.raises(InvalidMask):
        api.child(job, VARY_REGION, mask=np.ones((3, 3), bool))
    with pytest.raises(InvalidMask, match="needs a mask"):
        api.child(job, VARY_REGION)
    assert set(LABEL_KINDS) >= {unified_label(b) for b in UPSCALE_BUTTONS + GRID_BUTTONS}


# ============================================================================ property tests
_ISO = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                    timezones=st.just(timezone.utc))
_BUTTON = st.sampled_from(UPSCALE_BUTTONS + GRID_BUTTONS + ["Web", "❤️", "🪄 Vary (Strong)",
                                                             "🔍 Zoom Out 2x"])


@st.composite
def messages(draw):
    """Every payload shape providers.md documents for ``GET /v2/message`` and webhooks."""
    progress = draw(st.one_of(
        st.integers(0, 100), st.integers(0, 100).map(str), st.just("incomplete"), st.none(),
        st.integers(0, 100).map(lambda p: f"{p}%"),
    ))
    shape = draw(st.sampled_from(["nested", "flat", "running"]))
    images = draw(st.sampled_from(["both", "urls", "url", "none"]))
    buttons = draw(st.one_of(st.none(), st.lists(_BUTTON, max_size=8, unique=True)))
    when = draw(_ISO)
    created = draw(st.sampled_from(["iso", "firestore"]))
    result: dict[str, Any] = {
        "originatingMessageId": "m1",
        "buttonMessageId": "b1",
        "type": draw(st.sampled_from(["imagine", "button"])),
        "content": draw(st.sampled_from(["a cat --ar 3:2", "NASA launch", "sunset"])),
        "ref": draw(st.one_of(st.just(""), st.text(max_size=5))),
        "createdAt": when.isoformat().replace("+00:00", "Z") if created == "iso" else {
            "_seconds": int(when.timestamp()), "_nanoseconds": when.microsecond * 1000},
    }
    urls = [f"http://cdn.test/{i}.png" for i in range(1, 5)]
    if images in ("both", "url"):
        result["imageUrl"] = "http://cdn.test/grid.png"
    if images in ("both", "urls"):
        result["imageUrls"] = urls
    if buttons is not None:
        result["buttons"] = buttons
    body: dict[str, Any] = {} if progress is None else {"progress": progress}
    if shape == "nested":
        body["response"] = result
    elif shape == "flat":
        body.update(result)
    else:
        body["progressImageUrl"] = draw(st.one_of(st.none(), st.just("http://cdn.test/p.png")))
    return body, shape, images, buttons, when


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.sampled_from([None, "imagine", "upscale"]))
def test_parse_reads_every_documented_shape(case, kind):
    body, shape, images, buttons, when = case
    api = offline()
    update = api.parse(body, kind=kind)
    progress = body.get("progress")
    if isinstance(progress, str) and progress.strip().lower() == "incomplete":
        assert update.status is Status.FAILED and "incomplete" in update.error
        return
    if shape == "running":
        assert update.status in (Status.QUEUED, Status.RUNNING)
        number = None if progress is None else float(str(progress).rstrip("%"))
        assert update.progress == (None if number is None else min(number, 99.0))
        assert update.preview_url == body.get("progressImageUrl")
        if update.status is Status.QUEUED:
            assert not number and update.preview_url is None
        return
    if images == "none" and progress is not None and float(str(progress).rstrip("%")) < 100:
        assert update.status is Status.RUNNING  # a result without images is not done yet
        return
    assert update.status is Status.SUCCEEDED and update.progress == 100
    urls = {i.url for i in update.images} | ({update.grid.url} if update.grid else set())
    expected = set(body.get("response", body).get("imageUrls") or [])
    if images in ("both", "url"):
        expected.add("http://cdn.test/grid.png")
    assert urls == expected
    if images in ("both", "urls"):
        assert [i.index for i in update.images] == [1, 2, 3, 4]
    if images == "url":  # only imageUrl: the grid of a grid job, else the single image
        assert (update.grid is not None) == (kind == "imagine")
    assert update.extras["button_message_id"] == "b1"
    stamp = datetime.fromisoformat(update.extras["created_at"])
    assert abs((stamp - when).total_seconds()) < 1e-3
    job = succeeded(update.extras["buttons"])
    labels = api.actions(job)
    assert labels == tuple(dict.fromkeys(
        u for u in map(unified_label, buttons or []) if u is not None))
    for label in labels:
        assert tnl_button_label(label, buttons) in buttons


@settings(max_examples=100, deadline=None, database=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                         max_size=3)))
def test_parse_never_crashes_on_odd_payloads(body):
    api = offline()
    if isinstance(body, dict):
        assert api.parse(body).status in set(Status)
    else:
        with pytest.raises(ProviderError):
            api.parse(body)


def test_describe_seed_and_info_results():
    api = offline()
    d = api.parse({"progress": 100, "response": {"type": "describe", "content": [
        "1️⃣ a cat --ar 1:1", "2️⃣ a dog", "3️⃣ a bird", "4️⃣ a fish"]}}, kind="describe")
    assert d.status is Status.SUCCEEDED and d.extras["prompts"] == [
        "a cat --ar 1:1", "a dog", "a bird", "a fish"] and d.images is None
    s = api.parse({"progress": 100, "response": {"type": "seed", "content": "**seed** 77"}})
    assert s.extras["seed"] == "77"
    i = api.parse({"progress": 100, "response": {"type": "info", "content": {"Job Mode": "Fast"}}})
    assert i.extras["info"] == {"Job Mode": "Fast"}
    text = api.parse({"progress": 100, "response": {"type": "info",
                                                    "content": "**Job Mode**: Fast\nX: 1"}})
    assert text.extras["info"] == {"Job Mode": "Fast", "X": "1"}


# ============================================================================ against the sandbox
class Harness:
    """A TheNextLeg client on a sandbox; records every request it sends."""

    def __init__(self, client: httpx.AsyncClient, base: str, state) -> None:
        self.state = state
        self.tnl = state.providers["thenextleg"]
        self.sent: list[httpx.Request] = []
        client.event_hooks["request"].append(self._record)
        self.api = TheNextLeg(client=client, base_url=base + "/thenextleg", api_key=KEY,
                              sandbox=True)

    async def _record(self, request: httpx.Request) -> None:
        self.sent.append(request)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.sent if r.url.path.endswith(path)
                and r.method == "POST"]

    async def run(self, kind: str, prompt: str = "", parent: Job | None = None,
                  fetch: bool = False, **params: Any) -> Job:
        """Submit a job and poll it to its end, like the engine but without retries; with
        ``fetch`` download its images to learn their sizes (the sandbox draws them then)."""
        job = Job(provider="thenextleg", kind=kind, prompt=prompt, params=params,
                  parent_id=parent.id if parent else None)
        job.remote_id = (await self.api.submit(job, parent)).remote_id
        statuses = []
        for _ in range(2000):
            update = await self.api.poll(job)
            statuses.append((update.status, update.progress, update.preview_url))
            if update.status.final:
                break
            await asyncio.sleep(0.002)
        job.status, job.raw, job.error = update.status, update.raw, update.error
        job.error_type = update.error_type
        job.images, job.grid = update.images or [], update.grid
        job.extras = {**job.extras, **update.extras}
        job.extras["statuses"] = statuses
        for i, image in enumerate(job.images if fetch else []):
            size = PILImage.open(io.BytesIO(await self.api.download(image.url))).size
            job.images[i] = ji.Image(url=image.url, width=size[0], height=size[1])
        return job

    async def press(self, parent: Job, label: str, fetch: bool = False, **kw: Any) -> Job:
        spec = self.api.child(parent, label, **kw)
        params = dict(spec.params)
        if spec.files:
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as fh:
                fh.write(spec.files["mask"])
            params["mask_path"] = fh.name
        return await self.run(spec.kind, spec.prompt, parent, fetch=fetch, **params)


async def every_endpoint(h: Harness) -> None:
    """One pass over every endpoint and documented error, for in-process and loopback runs."""
    api = h.api
    job = await h.run("imagine", "a lighthouse at dusk --ar 4:1", ref="r-1", fetch=True)
    assert job.status is Status.SUCCEEDED, job.error
    assert h.bodies("/v2/imagine")[-1] == {"msg": "a lighthouse at dusk --ar 4:1", "ref": "r-1"}
    assert all(r.url.params["expireMins"] == "12" for r in h.sent if "/v2/message/" in r.url.path)
    assert job.raw["response"]["ref"] == "r-1" and job.extras["ref"] == "r-1"
    job.actions = api.actions(job)
    assert job.actions == GRID_ACTIONS
    # the grid's CDN refuses direct fetches: download falls back to /getImage
    before = len(h.sent)
    grid = PILImage.open(io.BytesIO(await api.download(job.grid.url)))
    fetched = [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in h.sent[before:]]
    assert fetched == [("GET", "grid.png"), ("POST", "getImage")]
    assert grid.size == (2 * job.images[0].width, 2 * job.images[0].height)
    assert await api.get_image(job.images[0].url) == await api.download(job.images[0].url)

    up = await h.press(job, "U2", fetch=True)
    assert up.status is Status.SUCCEEDED and len(up.images) == 1 and up.grid is None
    assert h.bodies("/v2/button")[-1] == {
        "ref": "r-1", "buttonMessageId": job.extras["button_message_id"], "button": "U2"}
    assert "Vary (Region)" in api.actions(up) and "Upscale (2x)" in api.actions(up)
    again = await h.press(job, "U2")
    assert again.status is Status.FAILED and again.error_type == "InvalidRequest"
    assert again.error == "You've already requested an upscale for this image"

    mask = np.zeros((up.images[0].height, up.images[0].width), bool)
    mask[10:80, 20:200] = True  # the upscale is 1024×256
    region = await h.press(up, VARY_REGION, mask=mask, prompt="a red balloon")
    assert region.status is Status.SUCCEEDED and len(region.images) == 4
    sent = h.bodies("/v2/button")[-1]
    assert sent["button"] == "🖌️ Vary (Region)" and sent["prompt"] == "a red balloon"
    assert not sent["mask"].startswith("data:")
    assert base64.b64decode(sent["mask"], validate=True)[:4] == b"\x89PNG"
    for label in ("V1", REROLL, "Zoom Out 2x", "⬆️"):
        child = await h.press(job if label in GRID_ACTIONS else up, label)
        assert child.status is Status.SUCCEEDED and len(child.images) == 4, label
    custom = await h.press(up, "Custom Zoom", fetch=True, zoom=1.5, ar="1:1")
    assert custom.images[0].width == custom.images[0].height
    assert h.bodies("/v2/button")[-1]["zoom"] == 1.5

    described = await h.run("describe", url=job.images[0].url)
    assert len(described.extras["prompts"]) == 4 and described.images == []
    assert all("lighthouse" in p for p in described.extras["prompts"])
    blended = await h.run("blend", urls=[i.url for i in job.images[:2]])
    assert blended.status is Status.SUCCEEDED and len(blended.images) == 4
    seed = await h.run("seed", parent=job)
    assert seed.extras["seed"].isdigit()
    info = await h.run("info")
    assert "Fast Time Remaining" in info.extras["info"]

    assert (await api.info())["Job Mode"] == "Fast"
    toggles = await api.settings()
    assert "Stealth mode" in toggles
    assert await api.set_setting("Stealth mode") == toggles
    assert h.tnl.account(KEY).stealth is True
    assert "fast-hours" in await api.slash_command("/relax")
    assert h.tnl.account(KEY).mode == "relax"
    assert "fast-hours" in await api.slash_command("fast")
    with pytest.raises(InvalidRequest, match="relax, fast, private, stealth"):
        await api.slash_command("public")

    # documented errors
    with pytest.raises(ModeratedPrompt, match="Invalid phrase: 'gore'"):
        await api.submit(Job(provider="thenextleg", kind="imagine", prompt="gore"), None)
    banned = await h.run("imagine", "gore", ignore_prefilter=True)
    assert h.bodies("/v2/imagine")[-1]["ignorePrefilter"] == "true"
    assert (banned.status, banned.error_type) == (Status.FAILED, "ModeratedPrompt")
    assert banned.error == "You can't use this prompt"
    for prompt, kind, words in (
        ("a cat --ar 9:0", "InvalidRequest", "Invalid parameter"),
        ("a cat sandbox:code=MODERATION_OUTAGE", "ServiceUnavailable",
         "There is a content moderator outage"),
    ):
        failed = await h.run("imagine", prompt)
        assert (failed.status, failed.error_type, failed.error) == (Status.FAILED, kind, words)
    h.tnl.queue_limit = 0
    full = await h.run("imagine", "a cat")
    assert (full.error_type, full.error) == ("RateLimited", "Queue full")
    h.tnl.queue_limit = emulation.DEFAULT_QUEUE_LIMIT
    h.tnl.account(KEY).fast_hours = 0
    slow = await h.run("imagine", "a cat")
    assert (slow.error_type, slow.error) == ("QuotaExceeded", CODES["NO_FAST_HOURS"].message)
    assert "relax" in slow.error and "\n" not in slow.error
    with pytest.raises(QuotaExceeded, match="fast hours"):
        await api.slash_command("fast")
    h.tnl.account(KEY).fast_hours = 15.0
    hang = await h.run("imagine", "a cat sandbox:hang", expire_mins=1)
    assert hang.status is Status.FAILED and "incomplete" in hang.error
    assert h.sent[-1].url.params["expireMins"] == "1"
    with pytest.raises(NotFound):
        await api.poll(Job(provider="thenextleg", kind="imagine", prompt="x",
                           remote_id="NoSuchMessage0000000"))
    api._api_key = "invalid-key"
    with pytest.raises(AuthenticationError, match="THENEXTLEG_API_KEY") as info_:
        await api.info()
    assert "invalid-key" not in str(info_.value)


def test_progress_rises_with_previews_on_the_sandbox_clock():
    async def flow():
        app = create_app(speed=0)
        clock = app.state.sandbox.clock
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            api = TheNextLeg(client=client, base_url="http://sandbox.test/thenextleg",
                             api_key=KEY, sandbox=True)
            job = Job(provider="thenextleg", kind="imagine", prompt="a cat --ar 4:1")
            job.remote_id = (await api.submit(job, None)).remote_id
            updates = []
            for _ in range(12):
                updates.append(await api.poll(job))
                clock.advance(4)
            assert updates[0].status is Status.QUEUED and updates[0].preview_url is None
            running = [u for u in updates if u.status is Status.RUNNING]
            progress = [u.progress for u in running]
            assert progress == sorted(progress) and len(set(progress)) >= 4
            assert all(0 <= p < 100 for p in progress)
            previews = [u.preview_url for u in running if u.progress]
            assert previews and all(p.endswith(".png") for p in previews)
            small = PILImage.open(io.BytesIO(await api.download(previews[-1])))
            assert updates[-1].status is Status.SUCCEEDED and updates[-1].progress == 100
            grid = PILImage.open(io.BytesIO(await api.download(updates[-1].grid.url)))
            assert small.width <= grid.width // 4

    asyncio.run(flow())


def test_every_endpoint_in_process():
    async def flow():
        app = create_app(speed=1000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            await every_endpoint(Harness(client, "http://sandbox.test", app.state.sandbox))

    asyncio.run(flow())


def test_every_endpoint_over_loopback(live_sandbox):
    async def flow():
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
            await every_endpoint(Harness(client, live_sandbox.url, live_sandbox.state))

    asyncio.run(flow())


def test_queue_full_at_submit_is_retried_by_the_engine(engine, sandbox):
    sandbox.faults.add("/thenextleg/v2/imagine", status=400, count=2,
                       body={"success": False, "msg": "QUEUE_FULL"})
    job = ji.imagine("a lighthouse", provider="thenextleg").wait(60)
    assert job.status is Status.SUCCEEDED
    assert sandbox.requests[("POST", "/thenextleg/v2/imagine")] == 3


# ============================================================================ through the engine
def test_button_flow_through_the_engine(engine, sandbox):
    job = ji.imagine("a lighthouse at dusk --ar 4:1", provider="thenextleg")
    assert job.provider == "thenextleg" and job.sandbox
    job.wait(60)
    assert job.actions == GRID_ACTIONS == tuple(job.raw["response"]["buttons"])
    assert all(image.path for image in [*job.images, job.grid])
    # the grid came through /getImage: the mj-cdn URL refused the direct fetch
    assert sandbox.requests[("POST", "/thenextleg/getImage")] >= 1

    up = job.upscale(2).wait(60)
    assert (up.kind, up.action, up.parent_id) == ("upscale", "U2", job.id)
    buttons = up.raw["response"]["buttons"]
    assert up.actions == tuple(unified_label(b) for b in buttons)
    assert "🖌️ Vary (Region)" in buttons and VARY_REGION in up.actions
    assert "Upscale (Subtle)" not in up.actions  # v5.2 offers Upscale (2x)/(4x) instead
    quadrant = PILImage.open(job.images[1].path).convert("RGB")
    big = PILImage.open(up.images[0].path).convert("RGB")
    assert big.size == (2 * quadrant.width, 2 * quadrant.height)

    mask = np.zeros((big.height, big.width), dtype=bool)
    mask[20:140, 30:200] = True
    region = up.vary_region(mask, prompt="a red cabin").wait(30)
    assert (region.kind, region.prompt, region.action) == ("vary_region", "a red cabin",
                                                           VARY_REGION)
    out = np.asarray(PILImage.open(region.images[0].path).convert("RGB"), dtype=int)
    changed = np.abs(out - np.asarray(big, dtype=int)).sum(axis=2) > 0
    assert changed.any() and not changed[~mask].any()
    assert region.actions == GRID_ACTIONS

    var = job.vary(1).wait(60)
    reroll = job.reroll().wait(60)
    assert (var.kind, reroll.kind, reroll.action) == ("variation", "reroll", REROLL)
    assert len(var.images) == len(reroll.images) == 4
    with pytest.raises(ActionNotAvailable):
        up.upscale(1)
    again = job.upscale(2)
    with pytest.raises(JobFailed, match="already requested an upscale"):
        again.wait(60)
    assert again.error_type == "InvalidRequest"


def test_engine_kinds_failures_and_client_calls(engine, sandbox):
    grid = ji.imagine("a harbour", provider="thenextleg").wait(60)
    described = engine.imagine(grid.images[0].url, provider="thenextleg", kind="describe")
    seed = engine.imagine("", provider="thenextleg", kind="seed", parent=grid)
    info = engine.imagine("", provider="thenextleg", kind="info")
    assert len(described.wait(60).extras["prompts"]) == 4
    assert seed.wait(60).extras["seed"].isdigit() and seed.parent_id == grid.id
    assert "Job Mode" in info.wait(60).extras["info"]

    refused = ji.imagine("a bloodbath", provider="thenextleg")
    with pytest.raises(JobFailed, match="Invalid phrase"):
        refused.wait(60)
    assert refused.error_type == "ModeratedPrompt"
    hang = ji.imagine("a tower sandbox:hang", provider="thenextleg", expire_mins=1)
    with pytest.raises(JobFailed, match="incomplete"):
        hang.wait(60)
    assert hang.error_type == "JobFailed"

    client = ji.client("thenextleg")
    assert {"info", "settings", "set_setting", "slash_command", "get_image"} <= set(dir(client))
    assert client.info()["Visibility Mode"] == "Public"
    assert "Relax mode" in client.settings()
    assert client.get_image(grid.grid.url)[:4] == b"\x89PNG"


# ------------------------------------------------------------------ spend
def test_fast_time_and_subscription_parse_the_info_fields():
    from jupyter_imagine.providers.thenextleg import _fast_time, _subscription

    assert _fast_time("12.06/15.0 hours (80.37%)") == (
        {"fast_seconds": pytest.approx(12.06 * 3600)}, {"fast_seconds": 15.0 * 3600})
    assert _fast_time("none") == ({}, {}) and _fast_time(None) == ({}, {})
    plan, renews = _subscription("Standard (Active monthly, renews next on December 20)")
    assert plan == "Standard" and (renews.month, renews.day, renews.hour) == (12, 20, 0)
    assert renews.tzinfo is not None
    assert _subscription("Basic") == ("Basic", None) and _subscription("") == (None, None)


def test_nothing_published_prices_a_midjourney_job():
    for kind in ("imagine", "upscale", "variation", "describe"):
        assert TheNextLeg.price(kind, {}) is None
    record = {"kind": "imagine", "params": {}, "raw": {}, "extras": {}, "status": "succeeded"}
    assert TheNextLeg.cost(record) is None
    assert TheNextLeg.PRICE_UNIT == "fast_seconds" and "imagine" in TheNextLeg.price_keys()
