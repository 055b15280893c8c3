"""providers/_timestamps.py: the services' wire timestamps as aware datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jupyter_imagine.providers._timestamps import parse_when


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-12-03T07:30:00Z", datetime(2026, 12, 3, 7, 30, tzinfo=timezone.utc)),
    ("2026-12-03T07:30:00.250+00:00",
     datetime(2026, 12, 3, 7, 30, 0, 250_000, tzinfo=timezone.utc)),
    ("2026-12-03T08:30:00+01:00", datetime(2026, 12, 3, 7, 30, tzinfo=timezone.utc)),
    ("2026-12-03 07:30:00", datetime(2026, 12, 3, 7, 30, tzinfo=timezone.utc)),  # no zone: UTC
    (datetime(2026, 12, 3, 7, 30), datetime(2026, 12, 3, 7, 30, tzinfo=timezone.utc)),
])
def test_timestamps_become_aware_datetimes(value, expected):
    got = parse_when(value)
    assert got == expected and got.utcoffset() is not None


def test_a_zone_is_kept():
    got = parse_when("2026-12-03T08:30:00+01:00")
    assert got.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize("value", [None, "", "yesterday", "2026-13-40"])
def test_nothing_or_not_a_timestamp_is_none(value):
    assert parse_when(value) is None
