"""Secret redaction helpers."""

from __future__ import annotations

import logging

from jupyter_imagine import _secrets


def test_scrub_masks_secret_named_fields_and_values():
    _secrets.register("tok-XYZ-987654321")
    data = {
        "api_key": "whatever",
        "webhook_secret": "s3cr3t",
        "Authorization": "abc",
        "nested": [{"note": "used tok-XYZ-987654321 here"}],
        "prompt": "a cat",
        "progress": 5,
    }
    out = _secrets.scrub(data)
    assert out["api_key"] == out["webhook_secret"] == out["Authorization"] == "***"
    assert out["nested"][0]["note"] == "used *** here"
    assert out["prompt"] == "a cat" and out["progress"] == 5
    assert data["api_key"] == "whatever"  # input untouched


def test_short_values_are_not_registered():
    _secrets.register("ab")
    assert _secrets.redact("abcabc") == "abcabc"


def test_logger_filter_redacts(caplog):
    _secrets.register("log-secret-55555")
    logger = _secrets.get_logger("jupyter_imagine.test")
    with caplog.at_level(logging.INFO, logger="jupyter_imagine.test"):
        logger.info("key is %s", "log-secret-55555")
    assert "log-secret-55555" not in caplog.text
    assert "key is ***" in caplog.text


# ------------------------------------------------ secret parameters: kept live, never stored
import json  # noqa: E402

import pytest  # noqa: E402

import jupyter_imagine as ji  # noqa: E402
from jupyter_imagine._config import IN_PROCESS_ROOT  # noqa: E402
from jupyter_imagine.engine import Engine  # noqa: E402
from jupyter_imagine.models import Job, Status  # noqa: E402
from jupyter_imagine.sandbox import create_app  # noqa: E402
from jupyter_imagine.store import Store  # noqa: E402

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}
HOOK = IN_PROCESS_ROOT + "/_sandbox/webhook-sink/apiframe"
SECRET = "whsec-live-0a1b2c3d4e"


def _sent_secret(state, job: Job) -> str | None:
    """The webhook secret the sandbox received with ``job``'s submit."""
    return state.tasks[job.remote_id].webhook_secret


def _stored_text(home) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file())


def test_split_secrets_masks_and_keeps_the_live_values_apart():
    public, live = _secrets.split_secrets(
        {"webhook_secret": "abcd-1234", "a": 1}, {"webhook_secret"}
    )
    assert public == {"webhook_secret": "***", "a": 1} and live == {"webhook_secret": "abcd-1234"}
    assert _secrets.redact("x abcd-1234") == "x ***"  # registered on the way
    assert _secrets.split_secrets({"webhook_secret": "***"}, {"webhook_secret"})[1] == {}


def test_a_webhook_secret_is_sent_live_to_jobs_and_children_but_never_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("APIFRAME_WEBHOOK_SECRET", raising=False)
    app = create_app(speed=1000.0)
    state = app.state.sandbox
    with Engine(Store(tmp_path), sandbox_app=app, **FAST) as eng:
        job = eng.imagine("a comet", provider="apiframe", webhook_url=HOOK, webhook_secret=SECRET)
        assert job.params["webhook_secret"] == "***" and SECRET not in repr(job.params)
        job.wait(30)
        up = job.upscale(2).wait(30)
        assert _sent_secret(state, job) == _sent_secret(state, up) == SECRET
        assert json.dumps(eng.store.get(up.id)).count(SECRET) == 0
        frame = eng.store.frame()
        assert len(frame) == 2 and SECRET not in frame.to_json(date_format="iso")
    assert SECRET not in _stored_text(tmp_path)
    assert up.params["webhook_secret"] == "***" and SECRET not in repr(up)

    # After a restart the secret is gone with the session: a child is refused, not sent masked.
    with Engine(Store(tmp_path), sandbox_app=app, **FAST) as eng:
        again = eng.get(job.id)
        before = len(state.tasks)
        with pytest.raises(ji.ConfigurationError, match="APIFRAME_WEBHOOK_SECRET") as info:
            again.upscale(1)
        assert "\n" not in str(info.value) and len(state.tasks) == before
        monkeypatch.setenv("APIFRAME_WEBHOOK_SECRET", "whsec-from-env-5566")
        child = again.upscale(1).wait(30)
        assert _sent_secret(state, child) == "whsec-from-env-5566"
    assert "whsec-from-env-5566" not in _stored_text(tmp_path)
    assert all(_sent_secret(state, j) != "***" for j in (job, up, child))


def test_a_resumed_job_needs_its_secret_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("APIFRAME_WEBHOOK_SECRET", raising=False)
    app = create_app(speed=1000.0)
    state = app.state.sandbox
    store = Store(tmp_path)
    # A job stored by a session that stopped before it was sent: the store holds only the mask.
    pending = [Job(provider="apiframe", kind="imagine", prompt=f"a moon {i}", sandbox=True,
                   params={"webhook_url": HOOK, "webhook_secret": "***"}) for i in range(2)]
    store.save(pending[0].to_record())
    with Engine(store, sandbox_app=app, **FAST) as eng:
        refused = eng.get(pending[0].id)
        with pytest.raises(ji.JobFailed, match="APIFRAME_WEBHOOK_SECRET"):
            refused.wait(30)
        assert refused.error_type == "ConfigurationError" and not state.tasks
    monkeypatch.setenv("APIFRAME_WEBHOOK_SECRET", "whsec-resume-7788")
    Store(tmp_path).save(pending[1].to_record())  # the engine closed the first store
    with Engine(Store(tmp_path), sandbox_app=app, **FAST) as eng:
        resumed = eng.get(pending[1].id).wait(30)
        assert resumed.status is Status.SUCCEEDED
        assert _sent_secret(state, resumed) == "whsec-resume-7788"


def test_secrets_over_a_served_sandbox(tmp_path, monkeypatch, live_sandbox):
    monkeypatch.setenv("APIFRAME_API_KEY", "sk-FAKE-apiframe-00aa11bb22")
    monkeypatch.setenv("APIFRAME_BASE_URL", live_sandbox.url + "/apiframe")
    hook = live_sandbox.url + "/_sandbox/webhook-sink/apiframe"
    with Engine(Store(tmp_path), **FAST) as eng:
        job = eng.imagine("a planet", provider="apiframe", webhook_url=hook, webhook_secret=SECRET)
        up = job.wait(30).upscale(3).wait(30)
        state = live_sandbox.state
        assert _sent_secret(state, job) == _sent_secret(state, up) == SECRET
    assert SECRET not in _stored_text(tmp_path)
