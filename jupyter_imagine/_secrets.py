"""Keep secrets out of every output.

Any API key, token or webhook secret the package reads is registered here; :func:`redact`
replaces each registered value in a string, :func:`scrub` does the same through nested JSON,
dropping keys whose *name* says they are secret. A logging filter installed on the package's
logger applies :func:`redact` to every record.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["MASK", "SECRET_FIELD", "get_logger", "redact", "register", "scrub", "split_secrets"]

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None

#: Field names whose values are never kept, whatever they hold.
SECRET_FIELD = re.compile(
    r"(^|_|-)(api[_-]?key|authorization|auth[_-]?token|token|secret|password|client[_-]?secret)$",
    re.IGNORECASE,
)
#: What a secret is replaced with wherever it would be kept or shown.
MASK = "***"
_MASK = MASK


def register(value: str | None) -> None:
    """Remember ``value`` as a secret (values shorter than 4 characters are ignored)."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _values:
            return
        _values.add(value)
        alternatives = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not isinstance(text, str):
        return text
    return pattern.sub(_MASK, text)


def scrub(data: Any) -> Any:
    """A copy of JSON-like ``data`` with secret-named fields masked and secret values redacted."""
    if isinstance(data, dict):
        return {
            k: (_MASK if isinstance(k, str) and SECRET_FIELD.search(k) and v else scrub(v))
            for k, v in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [scrub(v) for v in data]
    if isinstance(data, str):
        return redact(data)
    return data


def split_secrets(
    params: dict[str, Any], names: frozenset[str] | set[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``params`` with the values of the secret parameters ``names`` replaced by :data:`MASK`
    (a marker that the job has one), and those live values apart (each registered, so it is
    redacted everywhere). A value that already is the mask stays a marker with no live value."""
    public = dict(params)
    live: dict[str, str] = {}
    for name in names:
        value = public.get(name)
        if value in (None, ""):
            continue
        if value != MASK:
            live[name] = str(value)
            register(live[name])
        public[name] = MASK
    return public, live


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            record.msg = redact(record.getMessage())
            record.args = None
        return True


def install_log_filter(logger: logging.Logger) -> None:
    """Redact secrets in every record that reaches ``logger`` (idempotent)."""
    if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
        logger.addFilter(_RedactingFilter())


def get_logger(name: str) -> logging.Logger:
    """The logger called ``name`` with the redacting filter installed.

    Filters on a parent logger do not see records of its children, so every module of the
    package takes its logger from here.
    """
    logger = logging.getLogger(name)
    install_log_filter(logger)
    return logger
