"""Banatie (banatie-service) emulated at ``{root}/banatie``, its CDN at ``{root}/banatie-cdn``.

Same paths, envelopes, status strings, error codes and headers as ``https://api.banatie.app``
and ``https://cdn.banatie.app`` (``providers.md`` §5), so our client and third-party clients run
unchanged against it. The CDN is a second mounted module (:mod:`._banatie_cdn`) sharing this
module's emulator (``state.providers["banatie"]``).

API (``/banatie`` + the real path):

- public: ``GET /health``; ``GET /api/info`` (with a key: ``keyInfo``, incl. the org and project
  slugs the CDN URLs need); ``POST /api/bootstrap/initial-key`` (201 once, then 403).
- admin (master key; a project key gets 403): ``POST/GET /api/admin/keys``,
  ``DELETE /api/admin/keys/{id}``.
- generations: ``POST/GET /api/v1/generations``, ``GET/PUT/DELETE /api/v1/generations/{id}``,
  ``POST /api/v1/generations/{id}/regenerate`` and the older ``…/retry``.
- flows: ``POST/GET /api/v1/flows``, ``GET/DELETE /api/v1/flows/{id}``, ``GET …/generations``,
  ``GET …/images``, ``PUT …/aliases``, ``DELETE …/aliases/{alias}``, ``POST …/regenerate``.
- images: ``POST /api/v1/images/upload`` (multipart), ``GET /api/v1/images``,
  ``GET /api/v1/images/resolve/{alias}`` (the seed's form), ``GET/PUT /api/v1/images/{id|@alias}``,
  ``PUT /api/v1/images/{id}/alias``, ``DELETE /api/v1/images/{id}``.
- live: ``POST/GET /api/v1/live/scopes``, ``GET/PUT/DELETE /api/v1/live/scopes/{slug}``,
  ``POST …/{slug}/regenerate``; ``GET /api/v1/live?prompt=…`` (the seed's keyed form, scope
  ``api``); the CDN routes are also served under ``/banatie/cdn/…`` (the self-hosted form).

CDN (``/banatie-cdn``): ``GET /{org}/{project}/img/{imageId|@alias}`` and
``GET /{org}/{project}/live/{scope}?prompt=…&aspectRatio=…&autoEnhance=…&template=…`` — raw bytes,
``Cache-Control: public, max-age=31536000``, ``X-Image-Id``, and for live ``X-Cache-Status:
HIT|MISS`` (+ ``X-Generation-Id`` on a MISS, ``X-Cache-Hit-Count`` on a HIT). The sandbox has one
organisation and project, ``sandbox`` / ``notebook``.

Envelopes: ``{"success": true, "data": …}``, lists add ``"pagination": {"total", "limit",
"offset", "hasMore"}`` (``limit`` default 20, max 100); errors are ``{"success": false, "error":
{"message", "code"}}`` with ``VALIDATION_ERROR`` 400, ``UNAUTHORIZED`` 401, ``FORBIDDEN`` 403,
``GENERATION_NOT_FOUND``/``IMAGE_NOT_FOUND``/``FLOW_NOT_FOUND``/``ALIAS_NOT_FOUND``/
``SCOPE_NOT_FOUND``/``KEY_NOT_FOUND``/``PROJECT_NOT_FOUND``/``NOT_FOUND`` 404, ``ALIAS_CONFLICT``
and ``SCOPE_ALREADY_EXISTS`` 409, ``SCOPE_INVALID_FORMAT`` and ``IMAGE_NOT_IN_SCOPE`` 400,
``RATE_LIMIT_EXCEEDED`` 429, ``INTERNAL_ERROR`` 500.

Auth: ``X-API-Key``. Any non-empty key not in ``state.rejected_keys`` (and in
``state.accepted_keys`` when that is set) is a project key of the sandbox project; keys minted by
the bootstrap/admin endpoints are real master/project keys (revocable; project keys expire after
``expiresInDays`` on the simulated clock).

Generations: ``pending → processing → success | failed``. By default (``synchronous = True``, the
production behaviour) create, regenerate and a regenerating update answer ``success`` at once
with ``outputImage`` filled; with ``state.providers["banatie"].synchronous = False`` they answer
``pending`` and the generation runs on the simulated clock: ``pending`` for ``pending_seconds``
(1), ``processing`` until ``pending_seconds + processing_seconds`` (1 + 4), then final. Magic words:
``sandbox:fail`` (ends ``failed``), ``sandbox:hang`` (stays ``processing``, asynchronous mode);
``state.banned_words`` end ``failed`` with "Prompt blocked by the safety filter".

Rate limits: every ``/api/v1`` answer to a project key carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (unix seconds, rounded up); the 429 adds
``Retry-After`` (whole seconds, at least 1). Live answers carry the same headers for the caller's
IP (first ``X-Forwarded-For`` address, else the peer); only cache MISSes count. Defaults are
generous (``api_limit`` 10000, ``live_limit`` 1000 per window); ``enforce_real_limits = True``
applies the real ones (100 requests per key, 10 new live generations per IP). Windows last
``rate_window`` simulated seconds (3600) from the first counted request, so at speed 1000 an hour
passes in 3.6 real seconds; the headers give real time. ``rate_limited`` counts 429s answered.
The sandbox's balance setting (:mod:`.._accounts`) sets ``api_limit`` and opens fresh windows.

Choices where ``providers.md`` marks the real behaviour as inferred [I] or unknown [U]:

- Omitted ``flowId`` mints a new flow (returned as the generation's/image's ``flowId``, listed
  at once — the service creates the row lazily, which clients cannot observe); ``null`` means no
  flow; an unknown UUID creates that flow. ``flowAlias`` with ``flowId: null`` is a 400.
- Aliases match ``@[A-Za-z0-9_-]{1,100}``; ``@last``, ``@first`` and ``@upload`` are reserved.
  A project alias given to ``upload`` or to a generation's ``alias`` **moves** to the new image;
  ``PUT /images/{id}/alias`` with an alias another image holds is ``409 ALIAS_CONFLICT``.
- Technical aliases are computed per flow (``@last``/``@first``: the newest/oldest successful
  generation's image, ``@upload``: the newest upload); with no ``flowId`` context, over the
  project. Resolution order: technical → the flow's aliases → project aliases. References in a
  create resolve in the request's ``flowId`` (project-wide when omitted or null); an explicit
  reference that does not resolve is a 404; ``@aliases`` found in the prompt are added after the
  explicit ones (de-duplicated, at most 3 in all) and ignored when they do not resolve.
- Deleting a generation is soft (``includeDeleted=true`` lists it); its output image is deleted
  unless it holds a project alias. Deleting an image nulls ``outputImageId``, drops flow-alias
  entries and references to it. Deleting a flow deletes its generations and its un-aliased
  images; aliased images stay with ``flowId: null``.
- ``/health``, ``/api/info``, bootstrap and admin answers are plain JSON objects (the envelope is
  documented for ``/api/v1`` only); errors use the error envelope everywhere.
- A live scope at its ``newGenerationsLimit``, or with ``allowNewGenerations: false``, answers a
  MISS with 403 ``SCOPE_GENERATION_LIMIT_REACHED``. Live ``aspectRatio`` defaults to ``1:1``.
- Master keys are not rate limited. Regenerating a generation that is still running is 409
  ``GENERATION_IN_PROGRESS``. ``fileSize`` of a generated image is ``null`` until its bytes were
  first served (the sandbox draws lazily).
"""

from __future__ import annotations

from ._emulator import Banatie, build, build_cdn, emulator
from ._wire import CDN_PREFIX, NAME, PREFIX, fault_response

__all__ = [
    "CDN_PREFIX",
    "NAME",
    "PREFIX",
    "Banatie",
    "build",
    "build_cdn",
    "emulator",
    "fault_response",
]
