"""jupyter_imagine — image-generation services in Jupyter.

``%load_ext jupyter_imagine`` for the magics; :func:`imagine`, :func:`job`, :func:`history` for
Python, :func:`gallery` for a grid of past jobs. Importing starts nothing: the background engine
starts on first use, and the widgets (ipywidgets, anywidget) load when a job is first displayed.
"""

from __future__ import annotations

from typing import Any

from . import _accessor  # noqa: F401  (registers the df.imagine accessor)
from .api import (
    balance,
    batch,
    client,
    configure,
    estimate,
    history,
    imagine,
    job,
    provider_status,
    sync_history,
)
from .errors import (
    ActionNotAvailable,
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    ImagineError,
    InvalidRequest,
    JobFailed,
    JobTimeout,
    ModeratedPrompt,
    NotFound,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    StorageError,
)
from .errors import (
    InvalidMask as InvalidMask,
)
from .errors import (
    JobCancelled as JobCancelled,
)
from .errors import (
    PermissionDenied as PermissionDenied,
)
from .models import Image, Job, Status

__version__ = "0.1.0"

# The public surface, at most 29 names. Also importable from here, but not listed: the three
# refinements ``InvalidMask`` (an ``InvalidRequest``), ``JobCancelled`` (a ``JobFailed``) and
# ``PermissionDenied`` (a ``ProviderError``: a 403, rare once the key works; it made room for
# ``StorageError``),
# ``__version__``, and IPython's ``load_ipython_extension``/``unload_ipython_extension`` hooks.
# The Midjourney-only verbs live on the provider client: ``client("apiframe").describe(...)``.
__all__ = [
    "ActionNotAvailable",
    "AuthenticationError",
    "BudgetExceeded",
    "ConfigurationError",
    "Image",
    "ImagineError",
    "InvalidRequest",
    "Job",
    "JobFailed",
    "JobTimeout",
    "ModeratedPrompt",
    "NotFound",
    "ProviderError",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "Status",
    "StorageError",
    "balance",
    "batch",
    "client",
    "configure",
    "estimate",
    "gallery",
    "history",
    "imagine",
    "job",
    "provider_status",
    "sync_history",
]


def gallery(df_or_jobs: Any = None) -> Any:
    """A filterable grid of past jobs (:class:`jupyter_imagine.widgets.Gallery`).

    Args:
        df_or_jobs: a frame from :func:`history`, an iterable of jobs, or ``None`` (default):
            the newest 200 jobs. Clicking a job opens its live view with its actions.
    """
    from .widgets import gallery as make

    return make(df_or_jobs)


def _display_job(job: Job) -> dict[str, Any]:
    """``Job._display_hook``: the live widget (imported on first display)."""
    from .widgets._job_view import job_bundle

    return job_bundle(job)


def _mask_drawer(job: Job, prompt: str | None) -> Any:
    """``Job._mask_drawer_hook``: ``job.vary_region()`` with no mask opens the mask drawer in a
    notebook (``None`` elsewhere: the job then asks for a mask)."""
    from .widgets._job_view import drawer_for

    return drawer_for(job, prompt)


Job._display_hook = _display_job
Job._mask_drawer_hook = _mask_drawer  # read by Job.vary_region


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_imagine``: register the magics and start the engine."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext jupyter_imagine``."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
