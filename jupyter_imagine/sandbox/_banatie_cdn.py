"""Banatie's CDN (``https://cdn.banatie.app``) emulated at ``{root}/banatie-cdn``.

A second mount of the Banatie emulator (:mod:`._banatie`, whose docstring describes both): the
sandbox app mounts one module per prefix, and the real service has two hosts. Routes:

- ``GET /{org}/{project}/img/{imageId|@alias}`` — the image's bytes, ``X-Image-Id``,
  ``Cache-Control: public, max-age=31536000``; ``@alias`` is a project alias.
- ``GET /{org}/{project}/live/{scope}?prompt=…&aspectRatio=…&autoEnhance=…&template=…`` — a live
  generation: raw bytes with ``X-Cache-Status: HIT|MISS``, per-IP ``X-RateLimit-*`` headers.

The sandbox's organisation and project are ``sandbox`` / ``notebook`` (``GET
/banatie/api/info`` with a key tells them).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import Response

from . import _banatie
from ._state import SandboxState

__all__ = ["NAME", "PREFIX", "build", "fault_response"]

NAME = "banatie-cdn"
PREFIX = _banatie.CDN_PREFIX


def build(state: SandboxState) -> Starlette:
    """The CDN app for ``state``, to mount at :data:`PREFIX` (shares the API's emulator)."""
    return _banatie.build_cdn(state)


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in Banatie's error envelope."""
    return _banatie.fault_response(status, retry_after=retry_after)
