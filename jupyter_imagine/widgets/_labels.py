"""The human names the widgets show for a provider (``APIFRAME``, ``Banatie`` …)."""

from __future__ import annotations

from ..errors import ImagineError
from ..providers import provider_class

__all__ = ["provider_label"]


def provider_label(provider: str) -> str:
    """The provider's display label, or ``provider`` itself for a name no class is known for."""
    try:
        return provider_class(provider).label
    except ImagineError:
        return provider
