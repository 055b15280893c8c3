"""Where the widgets' ESM and CSS come from.

One copy of each file lives in the repository's ``js/`` folder (plain ESM, no build step; vitest
tests them there). The wheel carries them as ``jupyter_imagine/widgets/_static/`` (hatch
``force-include`` in ``pyproject.toml``), and that installed copy is what a widget loads. Only in
an editable checkout, where ``_static/`` does not exist, are they read from ``js/`` next to the
package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["asset_path", "read_asset"]

_PACKAGE_DIR = Path(__file__).resolve().parent
_STATIC = _PACKAGE_DIR / "_static"
_CHECKOUT = _PACKAGE_DIR.parent.parent / "js"


def asset_path(name: str) -> Path:
    """The file ``name`` (``job_view.js``, ``widgets.css`` …): the installed copy in
    ``_static/`` if there is one, else the checkout's ``js/``.

    Raises:
        FileNotFoundError: in neither place (a broken install).
    """
    for folder in (_STATIC, _CHECKOUT):
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"jupyter_imagine widget asset {name!r} is missing from {_STATIC} (and there is no "
        f"checkout at {_CHECKOUT}); reinstall jupyter_imagine"
    )


@cache
def read_asset(name: str) -> str:
    """The text of asset ``name`` (read once per process)."""
    return asset_path(name).read_text(encoding="utf-8")
