"""jupyter_imagine — image-generation services in Jupyter.

``%load_ext jupyter_imagine`` for the magics; :func:`imagine`, :func:`job`, :func:`history` for
Python. Importing starts nothing: the background engine starts on first use.
"""

from __future__ import annotations

from typing import Any

from .api import (
    account,
    blend,
    client,
    describe,
    faceswap,
    history,
    imagine,
    job,
    provider_status,
    seed,
    upscale,
)
from .errors import (
    ActionNotAvailable,
    AuthenticationError,
    ConfigurationError,
    ImagineError,
    InvalidMask,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobTimeout,
    ModeratedPrompt,
    NotFound,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from .models import Image, Job, Status

__version__ = "0.1.0"

__all__ = [
    "ActionNotAvailable",
    "AuthenticationError",
    "ConfigurationError",
    "Image",
    "ImagineError",
    "InvalidMask",
    "InvalidRequest",
    "Job",
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
    "Status",
    "__version__",
    "account",
    "blend",
    "client",
    "describe",
    "faceswap",
    "history",
    "imagine",
    "job",
    "load_ipython_extension",
    "provider_status",
    "seed",
    "upscale",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_imagine``: register the magics and start the engine."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext jupyter_imagine``."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
