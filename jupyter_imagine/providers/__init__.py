"""One module per provider: wire format ⇄ model. :data:`PROVIDERS` maps names to classes."""

from __future__ import annotations

from ..errors import ConfigurationError
from ._base import CONTRACT, ChildSpec, ParamSpec, Provider, RemoteJob, Submission, Update  # noqa: F401
from .apiframe import Apiframe
from .banatie import Banatie
from .blockade import Blockade
from .neuroflash import Neuroflash
from .thenextleg import TheNextLeg

#: The provider contract's types (imported above, hence the noqa) are re-exported here.
__all__ = ["PROVIDERS", *CONTRACT, "provider_class"]

#: Every provider by name, in the order ``%imagine providers`` lists them.
PROVIDERS: dict[str, type[Provider]] = {
    "apiframe": Apiframe,
    "thenextleg": TheNextLeg,
    "neuroflash": Neuroflash,
    "banatie": Banatie,
    "blockade": Blockade,
}


def provider_class(name: str | None) -> type[Provider]:
    """The class for provider ``name``; a :class:`ConfigurationError` names the choices."""
    key = (name or "").strip().lower()
    try:
        return PROVIDERS[key]
    except KeyError:
        choices = ", ".join(PROVIDERS)
        raise ConfigurationError(
            f"unknown provider {name!r}; choose one of: {choices}"
        ) from None
