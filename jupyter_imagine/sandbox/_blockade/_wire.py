"""Blockade's wire constants (statuses, styles, generators, export types) and its error answer."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from .. import _http as http
from .._state import retry_headers

NAME = "blockade"
PREFIX = "/blockade"
API = "/api/v1"

USERNAME = "sandbox@jupyter-imagine.local"
FAIL_MESSAGE = "Generation failed (sandbox:fail)"
SEED_MAX = 2147483647
INIT_STRENGTH_MAX = 0.97
MAX_UPLOAD = 50 * 1024 * 1024

#: Simulated seconds at which a request enters each status.
DISPATCHED_AT = 4.0
PROCESSING_AT = 6.0
COMPLETE_AT = 30.0
FAIL_AT = 18.0
STATUSES = ("pending", "dispatched", "processing", "complete", "abort", "error")

PANORAMA_SIZE = (2048, 1024)
THUMB_SIZE = (672, 336)
DEPTH_SIZE = (1024, 512)
DEPTH_HQ_SIZE = (2048, 1024)
CUBE_FACE = 512
JPEG_QUALITY = 90
PNG_LEVEL = 1


# ------------------------------------------------------------------------------ catalogue
def _style(
    id: int, name: str, description: str, family: int | None, sort_order: int, *,
    model: int = 3, max_char: int = 2000, negative: int = 1000, premium: int = 0, new: int = 0,
    experimental: int = 0,
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "description": description,
        "max-char": max_char,
        "negative-text-max-char": negative,
        "image": None,  # filled with this sandbox's address per request
        "image_jpg": None,
        "model": f"Model {model}",
        "model_version": str(model),
        "sort_order": sort_order,
        "premium": premium,
        "new": new,
        "experimental": experimental,
        "skybox_style_families_id": family,
    }


#: The style catalogue: Model 3 styles in three families, and one Model 4 style on its own.
STYLES: tuple[dict[str, Any], ...] = (
    _style(67, "M3 Photoreal", "Lifelike worlds with natural light", 1, 1),
    _style(119, "M3 Sci-Fi Realism", "Alien planets and far-future vistas", 1, 2),
    _style(68, "M3 Fantasy Landscape", "Mountains, forests and skies out of a storybook", 2, 3),
    _style(121, "M3 Cyberpunk", "Neon cities at night", 2, 4, new=1),
    _style(122, "M3 Winter Wonderland", "Snow, ice and clear cold light", 2, 5),
    _style(69, "M3 Digital Painting", "Painterly brushwork", 3, 6, negative=400),
    _style(70, "M3 Anime Art Style", "Flat colours and clean outlines", 3, 7),
    _style(71, "M3 Watercolor", "Soft washes on paper", 3, 8, premium=1),
    _style(
        200, "M4 Standard", "Model 4: sharper detail at 4K", None, 9, model=4, max_char=800,
        negative=400, experimental=1,
    ),
)
FAMILIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Realism", "sort_order": 1},
    {"id": 2, "name": "Worlds", "sort_order": 2},
    {"id": 3, "name": "Art", "sort_order": 3},
)

#: The legacy generators (the seed page's ``stable-skybox``).
GENERATORS: tuple[dict[str, Any], ...] = (
    {
        "id": 13,
        "generator": "stable-skybox",
        "name": "Stable Diffusion Skybox",
        "label": "Stable Diffusion Skybox",
        "params": {
            "prompt": {
                "name": "Text Prompt",
                "type": "textarea",
                "required": True,
                "max_value": 600,
                "display_help": "<p>e.g. 'A fine oil painting of ducks flying by'</p>",
                "display_wide": True,
                "display_label": "Describe the image you wish to create",
                "display_element": "textarea",
                "parsePrompt": True,
                "imagine_text": True,
            },
            "negative_text": {
                "name": "Negative Text Prompt",
                "type": "textarea",
                "max_value": 400,
                "default_value": "",
                "display_help": "<p>e.g. 'watermark', 'extra arms'</p>",
                "display_wide": True,
                "display_label": "Describe things to avoid when imagining.",
                "display_element": "textarea",
            },
            "seed": {
                "name": "Generation Seed",
                "type": "int",
                "max_value": SEED_MAX,
                "min_value": -1,
                "default_value": 0,
                "display_help": "<p>Choose 0 for a random seed.</p>",
                "display_label": "Image Generation Seed",
                "display_element": "input",
                "parse_random": True,
                "random_max_value": SEED_MAX,
                "random_min_value": 1,
            },
            "animation_mode": {
                "name": "Animation Mode",
                "type": "select",
                "options": [{"label": "Skybox", "value": "skybox"}],
                "required": False,
                "default_value": "skybox",
                "display_label": "Generation Mode",
                "display_element": "select",
            },
        },
        "sort_order": 1,
    },
)

#: Export types: ``(id, name, key, premium_feature, seconds to finish, file extension)``.
_EXPORTS: tuple[tuple[int, str, str, bool, float, str], ...] = (
    (1, "JPG", "equirectangular-jpg", False, 0.0, "jpg"),
    (2, "PNG", "equirectangular-png", False, 6.0, "png"),
    (3, "Cube Map", "cube-map-png", False, 8.0, "png"),
    (4, "HDRI HDR", "hdri-hdr", False, 12.0, "png"),
    (5, "HDRI EXR", "hdri-exr", False, 12.0, "png"),
    (6, "Depth Map", "depth-map-png", False, 0.0, "png"),
    (7, "Video Landscape", "video-landscape-mp4", True, 20.0, "gif"),
    (8, "Video Portrait", "video-portrait-mp4", True, 20.0, "gif"),
    (9, "Video Square", "video-square-mp4", True, 20.0, "gif"),
)
EXPORT_TYPES: tuple[dict[str, Any], ...] = tuple(
    {"id": i, "name": n, "key": k, "premium_feature": p} for i, n, k, p, _, _ in _EXPORTS
)
EXPORT_BY_ID = {e[0]: e for e in _EXPORTS}
VIDEO_SIZES = {7: (640, 360), 8: (360, 640), 9: (480, 480)}

ENHANCEMENTS = (
    "highly detailed, volumetric light",
    "cinematic atmosphere, soft global illumination",
    "vivid colours, crisp horizon",
    "dramatic sky, rich textures",
)


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered in Blockade's shape, ``{"error": "..."}``."""

    def response(self) -> Response:
        return error_response(self.status, self.message)


def error_response(
    status: int, error: str | None = None, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Blockade's error answer: ``{"error": "..."}`` with ``status``."""
    text = error or {
        400: "Bad request",
        401: "Invalid API key",
        403: "Account does not have access to this method",
        404: "Not found",
        405: "Method not allowed",
        422: "Unprocessable request",
        429: "Too Many Attempts.",
    }.get(status, "Internal server error" if status >= 500 else "Request failed")
    return JSONResponse({"error": text}, status_code=status, headers=headers or {})


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in Blockade's error shape."""
    return error_response(status, headers=retry_headers(status, retry_after))
