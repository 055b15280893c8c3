"""Where each provider's requests go."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from jupyter_imagine import _config
from jupyter_imagine.errors import ConfigurationError

ARGS = {"env_key": "APIFRAME_API_KEY", "default_base_url": "https://api.apiframe.pro",
        "sandbox_prefix": "/apiframe"}


def test_no_key_means_in_process_sandbox():
    s = _config.provider_settings("apiframe", **ARGS)
    assert s.sandbox and s.in_process and s.base_url.endswith("/apiframe")


def test_key_means_real_service_and_key_hidden(monkeypatch):
    monkeypatch.setenv("APIFRAME_API_KEY", "real-key-1234567")
    s = _config.provider_settings("apiframe", **ARGS)
    assert not s.sandbox and s.base_url == "https://api.apiframe.pro"
    assert "real-key" not in repr(s)


def test_base_url_override(monkeypatch):
    monkeypatch.setenv("APIFRAME_API_KEY", "real-key-1234567")
    monkeypatch.setenv("APIFRAME_BASE_URL", "http://127.0.0.1:9/apiframe")
    assert _config.provider_settings("apiframe", **ARGS).base_url == "http://127.0.0.1:9/apiframe"


def test_sandbox_url_points_everything_at_a_running_sandbox(monkeypatch):
    monkeypatch.setenv("APIFRAME_API_KEY", "real-key-1234567")
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_URL", "http://127.0.0.1:8765/")
    s = _config.provider_settings("apiframe", **ARGS)
    assert s.sandbox and not s.in_process and s.base_url == "http://127.0.0.1:8765/apiframe"


@pytest.mark.parametrize("env", [{"JUPYTER_IMAGINE_SANDBOX": "0"},
                                 {"APIFRAME_BASE_URL": "https://api.apiframe.pro"}])
def test_forced_out_of_sandbox_without_key_is_a_clear_error(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigurationError, match="APIFRAME_API_KEY is not set"):
        _config.provider_settings("apiframe", **ARGS)


def test_bad_settings(monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX", "maybe")
    with pytest.raises(ConfigurationError, match="0, 1 or auto"):
        _config.provider_settings("apiframe", **ARGS)
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_SPEED", "fast")
    with pytest.raises(ConfigurationError, match="must be a number"):
        _config.sandbox_speed()


@pytest.mark.parametrize("name, value, shown", [
    ("APIFRAME_BASE_URL", "htps://api.apiframe.pro", "'htps://api.apiframe.pro'"),
    ("APIFRAME_BASE_URL", "api.apiframe.pro", "'api.apiframe.pro'"),
    ("APIFRAME_BASE_URL", "https://ann:pw-secret@/v1", "'https://…@/v1'"),
    ("APIFRAME_BASE_URL", "http://[::1", "'http://[::1'"),
    ("JUPYTER_IMAGINE_SANDBOX_URL", "localhost:8765", "'localhost:8765'"),
])
def test_a_url_setting_that_is_no_http_url_is_refused_by_name(monkeypatch, name, value, shown):
    monkeypatch.setenv("APIFRAME_API_KEY", "real-key-1234567")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        _config.provider_settings("apiframe", **ARGS)
    assert str(info.value) == (
        f"{name} must be an http:// or https:// URL with a host, not {shown}; fix it, or unset it"
    )


def test_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTER_IMAGINE_HOME", str(tmp_path))
    assert _config.home() == tmp_path
    monkeypatch.delenv("JUPYTER_IMAGINE_HOME")
    assert _config.home().name == "jupyter_imagine"


# ------------------------------------------------------------------ price overrides
@pytest.fixture
def no_prices():
    import jupyter_imagine.providers  # noqa: F401  (each provider registers its price keys)

    _config.set_price_overrides(None)
    yield
    _config.set_price_overrides(None)


def test_price_overrides_replace_the_published_price(no_prices):
    from jupyter_imagine.models import Cost
    from jupyter_imagine.providers.apiframe import Apiframe

    assert Apiframe.price("imagine", {}) == Cost(4, "credits", "prices")
    _config.set_price_overrides({"apiframe": {"imagine": 5, "variation_turbo": 8}})
    assert _config.price_overrides() == {"apiframe": {"imagine": 5.0, "variation_turbo": 8.0}}
    assert Apiframe.price("imagine", {}).amount == 5
    assert Apiframe.price("variation", {"process_mode": "turbo"}).amount == 8
    assert Apiframe.price("reroll", {}).amount == 4  # the table still prices the rest
    copy = _config.price_overrides()
    copy["apiframe"]["imagine"] = 99  # a copy: the setting is unchanged
    assert Apiframe.price("imagine", {}).amount == 5
    _config.set_price_overrides({})
    assert _config.price_overrides() == {} and Apiframe.price("imagine", {}).amount == 4


@pytest.mark.parametrize("value, words", [
    ({"midjourney": {"imagine": 1}}, "unknown provider 'midjourney'; known: apiframe"),
    ({"apiframe": {"imagin": 1}}, "no price key 'imagin'; valid keys: blend, describe"),
    ({"apiframe": {"imagine": -1}}, "must be a finite number >= 0, not -1"),
    ({"apiframe": {"imagine": float("nan")}}, "finite number"),
    ({"apiframe": {"imagine": True}}, "finite number"),
    ({"apiframe": 4}, "must be a dict of price key"),
    ([("apiframe", 4)], "prices must be a dict"),
])
def test_bad_price_overrides_are_refused_in_one_line(no_prices, value, words):
    _config.set_price_overrides({"blockade": {"skybox": 2}})
    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(")) as info:
        _config.set_price_overrides(value)
    assert "\n" not in str(info.value)
    assert _config.price_overrides() == {"blockade": {"skybox": 2.0}}  # nothing changed


def test_images_url(monkeypatch):
    assert _config.images_url() is None
    monkeypatch.setenv("JUPYTER_IMAGINE_IMAGES", "~/team-images")
    assert _config.images_url() == str(Path("~/team-images").expanduser())
    monkeypatch.setenv("JUPYTER_IMAGINE_IMAGES", "s3://bucket/prefix")
    assert _config.images_url() == "s3://bucket/prefix"


# ------------------------------------------------------------------------------ budgets
@pytest.mark.parametrize(("spec", "amount", "period", "unit"), [
    (200, 200.0, "day", None),
    ((50, "week"), 50.0, "week", None),
    ("10/month", 10.0, "month", None),
    ({"amount": 3, "period": "session", "unit": "fast_seconds"}, 3.0, "session",
     "fast_seconds"),
])
def test_budget_rules_read_every_form(spec, amount, period, unit):
    from jupyter_imagine._config import BudgetRule, parse_budget

    assert parse_budget({" APIframe ": spec}) == {
        "apiframe": BudgetRule("apiframe", amount, period, unit)}


@pytest.mark.parametrize(("spec", "message"), [
    (-1, "finite amount ≥ 0"), (float("inf"), "finite amount"), ("lots", "finite amount"),
    (True, "finite amount"), ((5, "fortnight"), "day, week, month, session"),
])
def test_bad_budget_rules_are_one_line_configuration_errors(spec, message):
    from jupyter_imagine._config import parse_budget

    with pytest.raises(ConfigurationError, match=message):
        parse_budget({"apiframe": spec})
    with pytest.raises(ConfigurationError, match="dict of provider"):
        parse_budget(200)


def test_budget_periods_start_on_utc_calendar_bounds():
    from jupyter_imagine._config import period_start

    session = datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    now = datetime(2026, 12, 3, 17, 30, tzinfo=timezone.utc)  # a Thursday
    assert period_start("day", now, session) == datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert period_start("week", now, session) == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert period_start("month", now, session) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert period_start("session", now, session) == session


def test_set_budget_replaces_the_session_rules():
    try:
        _config.set_budget({"apiframe": 5})
        _config.set_budget({"blockade": (9, "month")})
        assert list(_config.budget_rules()) == ["blockade"]
        assert _config.budget_rules()["blockade"].label("credits") == (
            "blockade: 9 credits per month (UTC)")
    finally:
        _config.set_budget(None)
    assert _config.budget_rules() == {}
