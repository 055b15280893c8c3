"""Tests of jupyter_imagine._outage: one warning per outage of a repeated step."""

from __future__ import annotations

import logging

from jupyter_imagine._outage import Outage


def test_an_outage_is_two_warnings_however_many_tries_fail(caplog):
    caplog.set_level(logging.DEBUG, logger="t")
    outage = Outage(logging.getLogger("t"), "heartbeat of k1")
    outage.worked("the history answers again")  # nothing was failing: nothing to say
    for _ in range(5):
        outage.failed("the disk is full", "trying again every 10 s")
    assert outage.failing
    outage.worked("the history answers again")
    outage.worked("the history answers again")
    outage.failed("locked", "trying again every 10 s")  # a second outage
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        ("WARNING", "heartbeat of k1: the disk is full; trying again every 10 s"),
        *[("DEBUG", "heartbeat of k1: the disk is full; trying again every 10 s")] * 4,
        ("WARNING", "heartbeat of k1: the history answers again"),
        ("WARNING", "heartbeat of k1: locked; trying again every 10 s"),
    ]
