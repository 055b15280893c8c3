"""Reading the timestamps the services put on the wire."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["parse_when"]


def parse_when(value: Any) -> datetime | None:
    """A wire timestamp (ISO 8601 text, ``Z`` allowed, or a datetime) as an aware datetime (UTC
    when it names no zone); ``None`` for nothing or text that is not a timestamp."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
