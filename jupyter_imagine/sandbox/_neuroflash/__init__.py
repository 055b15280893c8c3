"""The neuroflash image service emulated at ``{root}/neuroflash`` (its token endpoint, at
``{root}/neuroflash-id``, is :mod:`._neuroflash_id`; both share one :class:`Neuroflash`).

Same paths, fields and envelopes as ``https://app.neuroflash.com`` (``providers.md`` §4 and the
seed page), so our client and third-party clients run unchanged against it:

- ``GET  /api/workspace-service/v1/workspaces`` — the caller's workspaces.
- ``GET  /api/usage-service/v1/workspaces/{ws}/quotas[?usageTypeKey=images]``.
- ``GET  /api/image-service/v1/workspaces/{ws}/image-models`` — the model catalogue.
- ``GET  /api/image-service/v1/workspaces/{ws}/images`` — list (newest first);
  ``POST`` the same path uploads ``{"imageUrl": "<http(s) URL or data: URI>"}`` (201, one image).
- ``GET``/``DELETE /api/image-service/v1/workspaces/{ws}/images/{id}`` (DELETE: 204).
- ``GET  /api/image-service/v1/workspaces/{ws}/images/{id}/content`` — the bytes
  (``_links.content``; bearer-protected like every call above).
- ``POST /api/image-service/v1/workspaces/{ws}/image-generation-tasks``, ``image-edit-tasks``,
  ``image-upscale-tasks`` — answer **synchronously** ``{images, generationId, description,
  detail}`` (there is no task status to poll).

Lists are ``{"page": {"size", "totalElements", "totalPages", "currentPage"}, "data": [...]}``
with ``page`` (1-based [I]) and ``size`` (default 20, at most 200; anything else is 400).

Auth: ``Authorization: Bearer <access_token>`` from the token endpoint. Missing, unknown or
expired tokens get 401 with a ``WWW-Authenticate: Bearer error="invalid_token"`` header. Tokens
**expire on the sandbox clock** (``token_ttl`` simulated seconds, default 14399 like the real
service), so a test expires every token with ``state.clock.advance(token_ttl)``, or gets tokens
that are born expired with ``token_ttl = 0``. Clients (service accounts): the fixed sandbox pair
``jupyter-imagine-sandbox`` / ``sandbox-secret``; any other client id is registered with the
secret it first presents (so a test can bring its own fake credentials), and a later request with
another secret is refused. Ids or secrets in ``state.rejected_keys`` (default ``invalid-key``)
are always refused; with ``state.accepted_keys`` set, only those client ids are let in.

Everybody is a member of one workspace, :data:`WORKSPACE_ID`. Each client id is its own user
(``createdByUserId`` = :func:`user_id`). Three images made by **another user**
(:data:`OTHER_USER_ID`, prompt ``"a harbour at dawn"``) are seeded in the workspace, so a delete
of one is the documented 403; so is deleting an image made with another client id. Clients in
``admins`` may delete anything. Editing or upscaling another user's image is 403 too (the seed:
"the caller must own each image").

Error shape ([U] in ``providers.md``; chosen): RFC 9457 problem details, media type
``application/problem+json``::

    {"type": "about:blank", "title": "Not Found", "status": 404,
     "detail": "Image 1f0c… not found", "instance": "/api/image-service/…"}

Validation errors (400) add ``"errors": [{"field": …, "message": …}]``; the quota answer is
402 with ``type`` ``https://app.neuroflash.com/problems/quota-exceeded``; a banned prompt
(``state.banned_words``) is 400 with ``type`` ``…/problems/content-policy``; a prompt with
``sandbox:fail`` fails its generation: 422 with ``type`` ``…/problems/generation-failed``; a
rate-limited request is 429 with ``type`` ``…/problems/rate-limit`` and ``Retry-After``.

Rate limits ([U]; chosen): every authenticated answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the window resets). Windows
are fixed, per client id, on the **real** clock (they pace requests, not jobs): ``rate_limit``
requests (default 10000) per ``rate_window`` seconds (default 60). ``strict_rate_limit = True``
lowers the limit to ``strict_limit`` (default 5) so tests can provoke the 429.

Quotas: ``images`` (used by every generated, edited or upscaled image; uploads are free) and
``words`` (untouched). Defaults: 1000 a month, 100 a day. A request for more images than are
left makes what is left and says so in ``detail``
(``{"code": "PARTIAL_QUOTA", "message": …}``); with none left it is 402. The daily amount does
not reset in the sandbox (its clock has no midnight); set ``quota`` fields to test, or the
available amount with ``/_sandbox/balance`` (see :mod:`.._accounts`).

Models (``image-models``; size in pixels of the long side):

- ``nano-banana-2`` (fal.ai): text2image + image2image, ``maxImages`` 4, the ten documented
  aspect ratios, ``jpeg``/``png``/``webp``; 1024 px.
- ``seedream-4`` (ByteDance): text2image only, ``maxImages`` 2, ``1:1``/``16:9``/``9:16``/``4:3``/
  ``3:4``, ``jpeg``/``png``; 768 px.
- ``clarity-upscaler`` (fal.ai): ``capabilities: ["upscale"]``, ``upscaleFactors: [2, 4]`` [I],
  ``jpeg``/``png``/``webp``; the output's long side is at most 4096 px.
- ``gpt-image-1`` (OpenAI): ``allowed: false`` (not in the sandbox plan): using it is 403.

Pictures: generations are :func:`~._art.render` at the aspect ratio's size;
an edit is a :func:`~._art.vary` of the (first) input, cover-cropped to the
output size, blended with a render of the edit prompt (``aspectRatio: "auto"`` or none keeps
the input's size); an upscale is :func:`~._art.upscale` by the factor. Each is
encoded in the requested ``outputFormat`` (default ``png``; an upscale keeps its input's).
``long_side`` (default ``None``: each model's own) shrinks every generated or edited image, for
fast tests (upscales still multiply their input).

Control, for clients in another process: ``GET``/``POST {PREFIX}/_sandbox/settings`` reads or
sets ``token_ttl``, ``rate_limit``, ``rate_window``, ``strict_rate_limit``, ``strict_limit``,
``long_side`` and ``quota`` (a dict of the quota's fields); ``POST {PREFIX}/_sandbox/revoke``
invalidates every issued token.
"""

from __future__ import annotations

from ._emulator import Neuroflash, build, emulator
from ._wire import (
    NAME,
    OTHER_USER_ID,
    PREFIX,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SEEDED_GENERATION_ID,
    WORKSPACE_ID,
    fault_response,
    problem,
    user_id,
)

__all__ = [
    "NAME",
    "OTHER_USER_ID",
    "PREFIX",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SEEDED_GENERATION_ID",
    "WORKSPACE_ID",
    "Neuroflash",
    "build",
    "emulator",
    "fault_response",
    "problem",
    "user_id",
]
