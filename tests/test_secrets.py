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
