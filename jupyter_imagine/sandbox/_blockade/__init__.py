"""Blockade Labs (Skybox AI) emulated at ``{root}/blockade``.

Same paths, fields, envelopes, status strings and error shapes as
``https://backend.blockadelabs.com`` (``providers.md`` §3 and the seed page), so the official SDKs
and our client run unchanged against it. Paths below ``/blockade/api/v1``:

- ``GET /skybox/styles`` (``?model_version=3|4``), ``GET /skybox/families`` — the style catalogue
  (:data:`STYLES`), hyphenated keys (``"max-char"``, ``"negative-text-max-char"``) included.
- ``POST /skybox`` — a new skybox (or a remix with ``remix_imagine_id`` /
  ``remix_obfuscated_id``); answers the generation object **unwrapped**, status ``pending``.
- ``GET /skybox/export`` — the export types; ``POST /skybox/export`` (``skybox_id`` = the
  skybox's ``obfuscated_id``, ``type_id``), ``GET`` / ``DELETE /skybox/export/{id}``.
- ``GET /generators``; ``POST /imagine/requests`` (the legacy generator API:
  ``generator`` + that generator's params, validated against its ``params``).
- ``GET /imagine/requests/{id}``, ``GET /imagine/requests/obfuscated-id/{obfuscated_id}`` —
  ``{"request": {...}}``; ``DELETE /imagine/requests/{id}`` (cancel: ``abort``),
  ``DELETE /imagine/requests/pending`` (cancel every ``pending`` request),
  ``DELETE /imagine/deleteImagine/{id}`` (``{"success": "Item deleted successfully", "id": "42"}``).
- ``GET /imagine/myRequests`` — ``status``, ``limit`` (default 18, 1–100), ``offset`` (the
  **page number**, default 0), ``order`` (``ASC``/``DESC``, default ``DESC``), ``imagine_id``,
  ``query`` (title or prompt, any case), ``generator``, ``skybox_style_id`` →
  ``{"data": [...], "totalCount": n, "has_more": bool}``.

Files are public, like Blockade's S3 bucket, under ``/blockade/cdn/...`` (404 until complete):
the panorama ``images/imagine/<slug>__<obfuscated_id>.jpg`` (2048×1024 JPEG), its thumbnail
``thumbs/imagine/thumb_….jpg`` (672×336) and depth map ``depths/imagine/depth_….png``, export
files ``exports/<export id>/<name>``, style previews ``styles/<id>.webp|.jpg``.

Auth: ``x-api-key`` header, or ``api_key`` as a query or body (JSON / form) field. A missing key
→ 401 ``{"error": "API key is required"}``; a key in ``state.rejected_keys`` (or not in
``state.accepted_keys`` when set) → 401 ``{"error": "Invalid API key"}``. Each key is one account:
requests, listings and exports of one key are invisible to another (404).

Errors are always ``{"error": "..."}``: 400 for a missing, malformed or out-of-range field
(length limits, seed range, unknown style, generator params, banned words — the seed page
documents 400 for "invalid generator data"); 401 auth; 403 a premium export type
(``state.providers["blockade"].premium`` is ``False`` by default); 404 an unknown or deleted id
(in the path or referenced by a field); 422 a request that is well-formed but not possible in the
current state (export or remix of a skybox that is not complete, cancelling a finished request or
export); 429 rate limit; 500 an internal failure.

Rate limits (Laravel's throttle, which Blockade's backend uses): every API answer carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix time when the
window ends). Windows are 60 simulated seconds per key. By default the limit is a generous
:attr:`Blockade.rate_limit` = 1000 and never enforced; with ``enforce_limits = True`` the limit is
:attr:`Blockade.enforced_limit` (default 10) and the request past it gets 429
``{"error": "Too Many Attempts."}`` with ``Retry-After`` (whole real seconds until the window
ends, at least 1; simulated seconds when the clock is frozen).

Lifecycle, from the sandbox clock (simulated seconds since submit): ``[0, 4)`` ``pending`` with
``queue_position`` 2 then 1 (``[2, 4)``), ``[4, 6)`` ``dispatched``, ``[6, 30)`` ``processing``,
then ``complete``; ``dispatched_at``, ``processing_at``, ``completed_at`` are set as reached.
A cancel sets ``abort``. Exports: JPG (1) and depth map (6) are ``complete`` at once; PNG 6 s,
cube map 8 s, HDRI 12 s, videos 20 s (``pending`` for the first second, then ``processing``).
Webhooks (``webhook_url``) are POSTed with the object as JSON on each status change.

Magic words in a prompt: ``sandbox:fail`` — ``error`` at 18 s with ``error_message``
``"Generation failed (sandbox:fail)"``; ``sandbox:hang`` — stays ``processing``. Banned words
(``state.banned_words``) → 400 ``Your prompt contains inappropriate content: 'gore'``.

Choices where the real behaviour is unknown ([I] in providers.md):

- ``skybox_style_id`` is required (current docs); the prompt limit is the style's ``"max-char"``,
  the negative text's its ``"negative-text-max-char"``.
- ``seed`` 0 (or absent) means random: a seed is drawn and reported in the object.
- ``enhance_prompt: true`` appends a few descriptive words to the stored ``prompt``.
- The depth map is always made: 1024×512, or 2048×1024 with ``return_depth_hq: true``.
- ``init_image`` blends into the result with ``init_strength`` as its weight (default 0.5);
  ``control_image`` lines show through the result (``control_model`` ``remix``, default, or the
  older ``sketch``/``scribble``, which need a 1024×512 image). Images may be files (multipart),
  base64 (with or without a data URI) or absolute URLs (this sandbox's own files are read
  directly).
- Cube maps are a 6×1 strip of 512 px faces in OpenGL/Unity order (+X, −X, +Y, −Y, +Z, −Z); HDRI
  exports (HDR and EXR) are 8-bit PNG stand-ins of the panorama; videos (premium only) are
  animated GIF stand-ins panning once around the panorama.
- Real sizes are 6144×3072 (M3; newer docs say 8K) with 672×336 thumbnails and 2048×1024 depth
  maps; the sandbox keeps 2048×1024 panoramas so tests stay fast.
"""

from __future__ import annotations

from .._art import _skybox as art  # the panorama renderer, for tests
from ._emulator import Blockade, build
from ._records import Export, Imagine
from ._wire import (
    COMPLETE_AT,
    EXPORT_TYPES,
    FAIL_MESSAGE,
    GENERATORS,
    NAME,
    PREFIX,
    STATUSES,
    STYLES,
    fault_response,
)

__all__ = [
    "COMPLETE_AT",
    "EXPORT_TYPES",
    "FAIL_MESSAGE",
    "GENERATORS",
    "NAME",
    "PREFIX",
    "STATUSES",
    "STYLES",
    "Blockade",
    "Export",
    "Imagine",
    "art",
    "build",
    "fault_response",
]
