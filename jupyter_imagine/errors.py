"""The exception tree.

Every error the package raises on purpose is an :class:`ImagineError`, and its message is one
line that names what was wrong and how to fix it::

    ImagineError
    ├── ConfigurationError        unknown provider, missing API key, bad setting
    ├── InvalidRequest            bad input, caught locally or answered by the provider (400)
    │   ├── InvalidMask           a mask that is not an image or not the parent's size
    │   └── ActionNotAvailable    a label the job does not offer now (U5, U1 on an upscale …)
    ├── NotFound                  unknown job id, locally or at the provider (404)
    ├── ProviderError             the service refused or failed
    │   ├── AuthenticationError   the key was missing or rejected (401)
    │   ├── PermissionDenied      the key may not touch this resource (403)
    │   ├── RateLimited           too many requests (429); ``retry_after`` in seconds
    │   ├── QuotaExceeded         out of credits or quota
    │   ├── ModeratedPrompt       the prompt was refused by moderation / a banned word
    │   └── ServiceUnavailable    5xx or a network error, after retries
    ├── JobFailed                 ``Job.wait()`` on a job that ended failed; ``.job`` holds it
    │   └── JobCancelled          … or that was cancelled
    ├── JobTimeout                the job's deadline or the wait's timeout passed
    ├── BudgetExceeded            a job would pass a spending budget; it was never sent
    └── StorageError              the history, image cache or an export folder cannot be read
                                  or written (disk full, read-only, locked too long, corrupt);
                                  ``.path`` names it

Messages go through :func:`jupyter_imagine._secrets.redact`, so no registered secret (API key,
token, webhook secret) can appear in one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._secrets import redact

if TYPE_CHECKING:  # pragma: no cover
    from .models import Job

__all__ = [
    "ActionNotAvailable",
    "AuthenticationError",
    "BudgetExceeded",
    "ConfigurationError",
    "ImagineError",
    "InvalidMask",
    "InvalidRequest",
    "JobCancelled",
    "JobFailed",
    "JobTimeout",
    "ModeratedPrompt",
    "NotFound",
    "PermissionDenied",
    "ProviderError",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "StorageError",
    "error_class",
]


class ImagineError(Exception):
    """Root of every error raised on purpose by jupyter_imagine.

    Args:
        message: one line saying what was wrong and how to fix it. Secrets are redacted.
        provider: the provider concerned, if any (default ``None``).
        status_code: the HTTP status the provider answered, if any (default ``None``).
    """

    def __init__(
        self, message: str, *, provider: str | None = None, status_code: int | None = None
    ) -> None:
        message = redact(" ".join(str(message).split()))
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # The third item restores subclass attributes (retry_after, reached_server, job …).
        state = {k: v for k, v in self.__dict__.items() if k != "job"}
        return (_rebuild, (type(self), self.message, self.provider, self.status_code), state)


def _rebuild(cls: type[ImagineError], message: str, provider: str | None, status: int | None):
    err = cls.__new__(cls)
    ImagineError.__init__(err, message, provider=provider, status_code=status)
    return err


class ConfigurationError(ImagineError):
    """Unknown provider, missing API key, or a bad setting."""


class InvalidRequest(ImagineError, ValueError):
    """Bad input: caught before sending, or a provider's 400 answer."""


class InvalidMask(InvalidRequest):
    """A mask that is not an image, or whose size differs from the image it edits."""


class ActionNotAvailable(InvalidRequest):
    """The job does not offer this action label now."""


class NotFound(ImagineError, LookupError):
    """Unknown job id, in the local history or at the provider (404)."""


class ProviderError(ImagineError):
    """The service refused the request or failed."""


class AuthenticationError(ProviderError):
    """The API key was missing or rejected (401)."""


class PermissionDenied(ProviderError):
    """The key is valid but may not touch this resource (403)."""


class RateLimited(ProviderError):
    """Too many requests (429).

    Args:
        retry_after: seconds the provider asked us to wait (default ``None``: unknown).
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class QuotaExceeded(ProviderError):
    """Out of credits, fast hours or quota."""


class ModeratedPrompt(ProviderError):
    """The prompt was refused by the provider's moderation or banned-word filter."""


class ServiceUnavailable(ProviderError):
    """A 5xx answer or a network error.

    Args:
        reached_server: ``False`` only when the request provably never reached the server
            (connection refused, DNS failure, connect timeout); a submit is retried only then.
            Default ``True``.
    """

    def __init__(self, message: str, *, reached_server: bool = True, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reached_server = reached_server


class JobFailed(ImagineError):
    """Raised by ``Job.wait()`` / ``await job`` when the job ended failed; ``.job`` is the job."""

    def __init__(self, message: str, *, job: Job | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.job = job


class JobCancelled(JobFailed):
    """Raised by ``Job.wait()`` when the job was cancelled."""


class JobTimeout(ImagineError, TimeoutError):
    """The job's deadline passed (the job is failed), or ``wait(timeout)`` ran out (it is not)."""

    def __init__(self, message: str, *, job: Job | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.job = job


class BudgetExceeded(ImagineError):
    """A job's expected cost would pass a budget (the session's, the user's configured one, or a
    call's ``budget=``); the job was never sent. The message names the budget, what is spent
    and reserved against it, and how to raise it.

    Args:
        budget: the budget's label, e.g. ``"apiframe 200 credits per day"`` (default ``None``).
    """

    def __init__(self, message: str, *, budget: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.budget = budget


class StorageError(ImagineError):
    """The history database, the image cache or an export folder cannot be used: the message
    says which path, what is wrong with it (disk full, read-only, locked for too long, not a
    database) and how to fix it.

    Args:
        path: the file or folder concerned (default ``None``).
    """

    def __init__(self, message: str, *, path: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.path = path


_BY_NAME = {
    name: obj
    for name, obj in globals().items()
    if isinstance(obj, type) and issubclass(obj, ImagineError)
}


def error_class(name: str | None) -> type[ImagineError]:
    """The exception class called ``name`` (as stored with a failed job); ``JobFailed`` if
    unknown."""
    return _BY_NAME.get(name or "", JobFailed)
