"""APIFRAME (Midjourney proxy, "original" v1 API) emulated at ``{root}/apiframe``.

Same paths, fields, status strings and error shapes as ``https://api.apiframe.pro`` (see
``providers.md`` §1), so the official clients and ours run unchanged against it.

Endpoints: ``POST /imagine``, ``/reroll``, ``/upscale-1x``, ``/upscale-alt``,
``/upscale-highres``, ``/variations`` (index ``1``–``4``, or ``strong``/``subtle`` on an
upscale), ``/inpaint``, ``/outpaint``, ``/pan``, ``/describe``, ``/blend``, ``/seed``,
``/faceswap``, ``/fetch``, ``/fetch-many``; ``GET /account``; images at
``GET /cdn/{task_id}/grid.png``, ``/1.png`` … ``/4.png`` (grid tasks) and ``/image.png``
(single-image tasks) — public, like a CDN, and 404 until the task has finished.

Auth: ``Authorization: <key>`` (raw, as APIFRAME documents) or ``Bearer <key>``. A missing key,
or one in ``state.rejected_keys`` (default ``{"invalid-key"}``), gets 401 ``{}``.

Errors: 400/402/404 ``{"errors": [{"msg": "..."}]}``; 401 and 5xx ``{}``. Unknown task ids are
404 ``Task not found`` on every endpoint.

Lifecycle, computed from the sandbox clock (simulated seconds since submit; all times halved
with ``process_mode: "turbo"``): ``[0, 2)`` ``pending``, ``[2, 4)`` ``starting``,
``[4, duration)`` ``processing`` with ``percentage`` a string ``"0"``, ``"10"`` … ``"90"``,
then ``finished`` (``percentage: "100"``). Durations: 40 s for grid tasks, 8 s for upscale-1x,
16 s for the other upscales, 10 s for describe and faceswap, 6 s for seed.

Webhooks: with ``webhook_url``, the same object ``/fetch`` answers is POSTed there at each change
of status or percentage and at the end, in order, timed on the sandbox clock (a clock jump
replays the changes it skipped), with ``x-webhook-secret: <webhook_secret>`` when given. A
URL on the sandbox's own address (``…/_sandbox/webhook-sink``) is delivered in-process; failed
deliveries are logged and never retried.

Magic words in a prompt, for tests:

- ``sandbox:fail`` — the task ends ``failed`` halfway through, with ``message``
  ``"Midjourney could not complete the job (sandbox:fail)"``.
- ``sandbox:hang`` — the task stays ``processing`` forever, stuck at ``percentage: "50"``.

Banned words (``state.banned_words``, default ``gore``, ``nsfw``, ``bloodbath``): a prompt with
one as a whole word is refused at submit with 400 ``Banned prompt: 'gore'``.

Credits start at 10000 and each accepted submit costs what APIFRAME charges (imagine, reroll,
variations, inpaint, outpaint, pan, blend, upscale-alt 4; upscale-1x, describe, seed, faceswap,
upscale-highres 4x 2; upscale-highres 2x 1). With too few left the submit gets 402
``Not enough credits``. ``JUPYTER_IMAGINE_SANDBOX_BALANCE`` and ``/_sandbox/balance`` set the
credits (see :mod:`.._accounts`).

Choices where ``providers.md`` marks the real behaviour as inferred or unknown:

- ``reroll`` keeps the parent's ``aspect_ratio`` unless given (the SDK documents 1:1).
- ``--ar W:H`` / ``--aspect W:H`` in an imagine prompt sets the aspect ratio when the body has
  no ``aspect_ratio``; the body wins when both are given.
- A failed task carries its reason in ``message``; insufficient credits answer 402.
- ``pan`` tasks are typed ``pan-<direction>``, subtle upscales ``upscale-subtle``, high-res
  upscales ``upscale-2x`` / ``upscale-4x``.
- Children (upscales, variations, inpaints …) inherit the parent's ``process_mode`` unless given.
- Inpaint masks are white = redraw on black, at the upscale's exact pixel size.
- ``/seed`` creates a short task whose finished form carries ``"seed"`` (a string).
- ``describe``, ``blend``, ``faceswap`` and ``upscale-highres`` read images from the sandbox's
  own CDN URLs directly; other URLs are downloaded once at submit (400 if that fails).

Images are a pure function of each task's record and its lineage (see
:mod:`.._art._midjourney`); an inpaint's four images are each the upscale's full size, so
that only the masked pixels differ from it, and its grid is their 2×2 composite.
"""

from __future__ import annotations

from ._emulator import Apiframe, build
from ._records import Task
from ._wire import NAME, PREFIX, fault_response

__all__ = [
    "NAME",
    "PREFIX",
    "Apiframe",
    "Task",
    "build",
    "fault_response",
]
