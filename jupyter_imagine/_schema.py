"""The history's schema: the key, the categories and the rules that derive the common columns.

What each provider's job record means in the common columns that do not sit on
:class:`~jupyter_imagine.models.Job` itself: ``negative_prompt``, ``width``/``height``,
``cost``/``cost_unit``/``cost_source``. The store calls :func:`derive_columns` on every save and
keeps the results in indexed columns, so building the frame never parses a record. Rules:

* ``negative_prompt``: the ``negative_prompt`` / ``negative_text`` parameter (Blockade's wire
  name), else the same field in the provider's payload (``negative_text``, ``negativePrompt``);
  else the provider's own rule (:meth:`Provider.negative_prompt
  <jupyter_imagine.providers.Provider.negative_prompt>`); else NA.
* ``width``/``height``: the first result image's pixel size (the panorama for a skybox, one tile
  for a 2×2 grid), else the grid's; NA until known.
* ``cost``, ``cost_unit``, ``cost_source``: :meth:`Provider.cost
  <jupyter_imagine.providers.Provider.cost>` of the record — a figure the provider's payload
  states (source ``provider``), else its published price table or the user's override (source
  ``prices``) for succeeded jobs, else NA. Whether a failed job is charged is documented nowhere,
  so it is NA rather than a guess. The unit is the provider's own (``credits``,
  ``fast_seconds``, ``images``, ``requests`` …).

:func:`check_frame` is what the ``df.imagine`` accessor uses to refuse frames without the key
columns. This module sits below the store and imports only the providers and lower layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import ConfigurationError
from .models import Cost
from .providers import provider_class

__all__ = [
    "KEY_COLUMNS",
    "KNOWN_PROVIDERS",
    "RESULT_ROLES",
    "STATUS_ORDER",
    "as_number",
    "check_frame",
    "cost_for",
    "derive_columns",
    "first_text",
    "result_images",
]

#: The five providers of DESIGN.md: the ``provider`` column's categories always include them, so
#: frames of different providers (or filters) have the same dtype and concatenate cleanly.
KNOWN_PROVIDERS = ("apiframe", "banatie", "blockade", "neuroflash", "thenextleg")
#: The columns that identify a row: the frame's index is the pair of them.
KEY_COLUMNS = ("provider", "id")
#: The categories of the frame's ``status`` column, in this order.
STATUS_ORDER = ("queued", "running", "succeeded", "failed", "cancelled")


# ===================================================================================== schema
_NEGATIVE_PARAMS = ("negative_prompt", "negative_text", "negative")
_NEGATIVE_RAW = ("negative_text", "negative_prompt", "negativePrompt", "negativeText")

def as_number(value: Any) -> float | None:
    """``value`` as a finite float (numbers and numeric text), else ``None`` (bools too)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def first_text(sources: Iterable[Mapping[str, Any]], names: Sequence[str]) -> str | None:
    """The first non-blank text among ``names`` of ``sources`` (in that order), else ``None``."""
    for source in sources:
        for name in names:
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return value
    return None


def cost_for(record: Mapping[str, Any]) -> Cost | None:
    """What the job ``record`` cost by its provider's rules (see the module docstring), else
    ``None`` (NA; also for a provider this installation does not know)."""
    try:
        cls = provider_class(str(record.get("provider") or ""))
    except ConfigurationError:
        return None
    return cls.cost(record)


#: Image roles that are results (counted in ``n_images``, listed in ``image_urls``/``paths``);
#: a skybox's ``thumbnail`` and ``depth`` map and a grid composite are not.
RESULT_ROLES = frozenset({"image"})


def result_images(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The result images of a job record (role ``image``; a missing role counts as one)."""
    return [
        i for i in record.get("images") or []
        if isinstance(i, Mapping) and (i.get("role") or "image") in RESULT_ROLES
    ]


def derive_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """The common columns of a job record that need a provider's rules.

    Returns ``negative_prompt`` (text or ``None``), ``width`` and ``height`` (ints or ``None``)
    and ``cost`` (float or ``None``) with its ``cost_unit`` and ``cost_source`` (text or
    ``None``). ``record`` is a scrubbed
    :meth:`~jupyter_imagine.models.Job.to_record` dict.
    """
    params = record.get("params") if isinstance(record.get("params"), Mapping) else {}
    raw = record.get("raw") if isinstance(record.get("raw"), Mapping) else {}
    extras = record.get("extras") if isinstance(record.get("extras"), Mapping) else {}
    negative = first_text((params,), _NEGATIVE_PARAMS) or first_text((raw,), _NEGATIVE_RAW)
    if negative is None:
        try:
            negative = provider_class(str(record.get("provider") or "")).negative_prompt(record)
        except ConfigurationError:
            negative = None
    width = height = None
    images = result_images(record)
    grid = record.get("grid") if isinstance(record.get("grid"), Mapping) else None
    for image in [*images, *([grid] if grid else [])]:
        w, h = image.get("width"), image.get("height")
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            width, height = w, h
            break
    cost = cost_for({**record, "params": params, "raw": raw, "extras": extras})
    return {
        "negative_prompt": negative,
        "width": width,
        "height": height,
        "cost": cost.amount if cost is not None else None,
        "cost_unit": cost.unit if cost is not None else None,
        "cost_source": cost.source if cost is not None else None,
    }


def check_frame(df: Any, what: str = "this") -> None:
    """Raise ``AttributeError`` with a clear message unless ``df`` has the key columns.

    The key columns (``provider`` and ``id``) may be columns or index levels.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise AttributeError(f"{what} needs a pandas DataFrame, not {type(df).__name__}")
    present = set(map(str, df.columns)) | {str(n) for n in df.index.names if n is not None}
    missing = [c for c in KEY_COLUMNS if c not in present]
    if missing:
        raise AttributeError(
            f"{what} needs the key columns 'provider' and 'id' (missing: "
            f"{', '.join(repr(m) for m in missing)}); use a frame from jupyter_imagine.history() "
            "or jupyter_imagine.batch(), or a slice of one that keeps those columns"
        )

