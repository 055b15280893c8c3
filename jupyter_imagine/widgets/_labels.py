"""The human names the widgets show: a provider's (``APIFRAME`` …) and a job's kind badge."""

from __future__ import annotations

import re

from ..errors import ImagineError
from ..providers import provider_class

__all__ = ["SPELLED", "kind_label", "provider_label"]

#: Words for the labels that are only an emoji (shown after them, or instead where no emoji font
#: can draw them; ``js/job_view.js`` has the same table).
SPELLED = {"🔄": "Reroll", "⬅️": "Pan left", "➡️": "Pan right", "⬆️": "Pan up", "⬇️": "Pan down"}


def provider_label(provider: str) -> str:
    """The provider's display label, or ``provider`` itself for a name no class is known for."""
    try:
        return provider_class(provider).label
    except ImagineError:
        return provider


def kind_label(action: str, kind: str) -> str:
    """The kind badge of a job started by ``action``: ``"U2 · upscale"``, but the kind only once
    where the action already says it (``"Vary (Region)"`` for a ``vary_region``, ``"Reroll"`` for
    the 🔄 reroll). ``kind`` alone for a job no button started."""
    if not action:
        return kind
    words = SPELLED.get(action, action)
    said = re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")
    if said and (said == kind or said.startswith(f"{kind}_")):
        return words
    return f"{words} · {kind}"
