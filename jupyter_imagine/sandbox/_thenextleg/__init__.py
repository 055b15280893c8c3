"""TheNextLeg (TNL, Midjourney proxy, v2 API) emulated at ``{root}/thenextleg``.

Same paths, envelopes, progress values, button texts and error shapes as
``https://api.thenextleg.io`` (``providers.md`` §2 and the seed page on Vary (Region)), so a
third-party TNL client pointed at ``{root}/thenextleg`` works unchanged.

Endpoints (all answer ``{"success": true, "messageId", "createdAt"}`` and run asynchronously):

- ``POST /v2/imagine`` — ``msg`` (prompt with Midjourney flags; leading image URLs are an image
  prompt), ``ref`` (any JSON, echoed back), ``webhookOverride``, ``ignorePrefilter``.
- ``POST /v2/button`` — ``buttonMessageId``, ``button`` (a text the result listed), ``ref``,
  ``webhookOverride``; ``prompt`` + ``mask`` for ``🖌️ Vary (Region)``; ``prompt``, ``zoom``
  (1–2, default 2) and ``ar`` for ``Custom Zoom``; ``prompt`` on ``🔄`` rerolls with a new prompt.
- ``POST /v2/describe`` (``url``), ``POST /v2/blend`` (``urls``: 2–5), ``POST /v2/seed``
  (``messageId``), ``GET``/``POST /v2/info``, ``GET /v2/settings`` (get), ``POST /v2/settings``
  (``settingsToggle``), ``POST /v2/slash-commands`` (``cmd``: relax, fast, private, stealth).
- ``GET /v2/message/<messageId>?expireMins=N`` (default 12) — ``{"progress": 0,
  "progressImageUrl": null}`` while queued, ``{"progress": 46, "progressImageUrl": <blurred
  low-res preview>}`` while running, ``{"progress": 100, "response": {…}}`` when done (or failed
  with a content code), ``{"progress": "incomplete"}`` once ``expireMins`` passed without a result.
- ``POST /getImage`` (``imgUrl``) — the raw image bytes of any image URL (the sandbox's own, or
  fetched).
- Images: a result's ``imageUrl`` (grid, or the single image of an upscale) lives at
  ``/mj-cdn/attachments/<messageId>/grid.png|image.png`` and, like Midjourney's CDN, **refuses
  direct fetches with 403** — fetch it through ``/getImage``. The four split ``imageUrls`` and
  the progress previews live at ``/cdn/<messageId>/1.png``…``4.png`` / ``progress-<n>.png``,
  public.

The GET form ``?authToken=<token>&field=value…`` works on ``/v2/button``, ``/v2/describe``,
``/v2/settings`` (with ``settingsToggle`` it sets), ``/v2/slash-commands``, ``/v2/info`` and
``/v2/message/<id>``. Routes answer with or without a trailing slash.

Auth: ``Authorization: Bearer <token>`` (the scheme is required) or ``?authToken=``. Missing or
rejected (``state.rejected_keys``, default ``{"invalid-key"}``) → 401 ``{"success": false, "msg":
…}``. Every error is ``{"success": false, "msg": "<text>"}``: 400 for a missing or bad field,
404 for an unknown message (messages belong to the token that made them), 405, 401, 5xx.

Results (the ``response`` object, also the webhook body): ``createdAt``, ``responseAt`` (ISO),
``type`` (``imagine``, ``button``, ``describe``, ``blend``, ``seed``, ``info``, ``settings``,
``slash-commands``), ``buttons``, ``imageUrl``, ``imageUrls``, ``buttonMessageId`` (what
``/v2/button`` takes), ``originatingMessageId`` (= the messageId), ``content`` (the prompt; four
prompts for describe; an object for info; the bot's answer otherwise), ``ref``, and ``seed`` for
seed messages. Buttons: a grid offers ``U1``–``U4``, ``🔄``, ``V1``–``V4``; an upscale offers
``Vary (Strong)``, ``Vary (Subtle)``, ``🖌️ Vary (Region)``, ``Upscale (2x)``, ``Upscale (4x)``
(``Upscale (Subtle)``, ``Upscale (Creative)`` with ``--v 6`` or the "MJ version 6" setting),
``Zoom Out 2x``, ``Zoom Out 1.5x``, ``Custom Zoom``, ``Make Square`` (non-square only),
``⬅️``, ``➡️``, ``⬆️``, ``⬇️``; a high-res upscale offers ``Vary (Strong)``, ``Vary (Subtle)``.
Every listed button works; the images follow the APIFRAME emulation's semantics
(:mod:`.._art._midjourney`): grid 2×2 at the ``--ar``, U = that quadrant at 2×, V resembles
its parent, 🔄 does not, Vary (Region) changes only the masked pixels (mask of the upscale's
exact size, PNG or WebP, base64 with or without a ``data:`` prefix; else 400).

Lifecycle on the sandbox clock (simulated seconds): queued for 2 s (less for short messages),
then ``progress`` rises 0, 15, 31, 46, 62, 78, 93 until done. Durations: 40 s for grids, 8 s
for U, 16 s for high-res upscales, 10 s for describe, 3 s for seed, 2 s for info, settings and
slash commands; relax mode ×1.5, turbo ×0.5.

Failures arrive as a finished message whose ``response.content`` is a content code, about one
simulated second after submit:

- ``BANNED_PROMPT`` — a banned word (``state.banned_words``) in a button's prompt, or in ``msg``
  with ``ignorePrefilter`` true; without it ``/v2/imagine`` answers the prefilter's 400
  ``{"success": false, "msg": "Invalid phrase: '<word>'"}``.
- ``QUEUE_FULL`` — the token already has :attr:`TheNextLeg.queue_limit` (default 50) jobs queued
  or running.
- ``ALREADY_REQUESTED_UPSCALE`` — a second ``U<n>`` of the same grid quadrant.
- ``NO_FAST_HOURS`` — a job in fast or turbo mode (the account's mode, or ``--fast``/``--turbo``)
  while the account's ``fast_hours`` is 0; also ``slash-commands fast`` then. Each account
  (one per token, :meth:`TheNextLeg.account`) starts with 15 fast hours (or what
  :mod:`.._accounts`' balance setting says); a grid costs one GPU
  minute, a high-res upscale two, turbo twice that, relax nothing. ``--relax`` runs one job in
  relax mode.
- ``INVALID_PARAMETER`` — a malformed ``--ar``/``--aspect`` or an unknown ``--flag`` in ``msg``.
- ``BUTTON_NOT_FOUND`` — a button the message does not list (or a message not done yet).
- ``INVALID_LINK`` — describe/blend/image-prompt URLs that cannot be fetched as images.
- Magic words: ``sandbox:code=<CODE>`` fails the message with that code (any code of the seed
  page; ``JOB_QUEUED`` and ``APPEAL_ACCEPTED`` are shown while queued and the job then goes on);
  ``sandbox:fail`` fails it halfway with ``FAILED_TO_PROCESS_YOUR_COMMAND``; ``sandbox:hang``
  sticks at 46 % until the message turns ``incomplete``.

Webhooks: with ``webhookOverride`` the final response object (success or failure) is POSTed
there once, as JSON, without headers beyond the content type.

Choices where ``providers.md`` marks a detail [I] or [U]:

- ``GET /v2/message`` nests the result under ``response`` (what clients read); ``createdAt`` is an
  ISO string (the v2 form; v1's Firestore ``{_seconds, _nanoseconds}`` is not emitted).
- A content code is the whole ``content`` (``"BANNED_PROMPT"``); such a message has
  ``progress: 100`` and no images.
- ``incomplete`` is computed per request: a message not done within the ``expireMins`` the poll
  names reads ``{"progress": "incomplete"}``, even if it would finish later.
- Error bodies other than the prefilter's use the same ``{"success": false, "msg"}`` shape;
  401 when the token is missing or rejected, with no hint of the token in it.
- ``ignorePrefilter`` is true for ``true``/``"true"``/``"1"`` (the docs' sample sends a string).
- ``/v2/seed`` takes a messageId or a buttonMessageId; its result has ``seed`` (a string) and
  ``content`` "**Job ID**: <uuid> **seed** <n>".
- ``/v2/info`` answers on GET (docs) and POST (official Python client).
- Describe's four prompts carry no "1️⃣" markers; describe and blend accept any fetchable image.
- ``ref`` is echoed as given (clients send objects too); ``slash-commands private`` and
  ``stealth`` both turn on stealth mode.
"""

from __future__ import annotations

from ._emulator import TheNextLeg, build
from ._records import Account, Message
from ._wire import CODES, DEFAULT_QUEUE_LIMIT, NAME, NOTE_CODES, PREFIX, fault_response

__all__ = [
    "CODES",
    "DEFAULT_QUEUE_LIMIT",
    "NAME",
    "NOTE_CODES",
    "PREFIX",
    "Account",
    "Message",
    "TheNextLeg",
    "build",
    "fault_response",
]
