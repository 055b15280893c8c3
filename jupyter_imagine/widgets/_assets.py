"""Where the widgets' ESM and CSS come from.

One copy of each file lives in the repository's ``js/`` folder (plain ESM, no build step; vitest
tests them there). The wheel carries them as ``jupyter_imagine/widgets/_static/`` (hatch
``force-include`` in ``pyproject.toml``), and that installed copy is what a widget loads. Only in
an editable checkout, where ``_static/`` does not exist, are they read from ``js/`` next to the
package.

The widgets' shared DOM helpers live in ``_dom.js``. anywidget evaluates ``_esm`` as a module from
a string, where a relative ``import … from "./_dom.js"`` cannot resolve, so :func:`widget_esm`
inlines the helpers in place of that import line (vitest imports the files as they are).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

__all__ = ["SHARED", "asset_path", "read_asset", "widget_esm"]

#: The shared helper module every widget's ESM may import from (and gets inlined).
SHARED = "_dom.js"
_SHARED_IMPORT = re.compile(r'^import \{[^}]*\} from "\./_dom\.js";\n', re.MULTILINE)
_EXPORT = re.compile(r"^export (?=(?:async )?function |const |let |class )", re.MULTILINE)

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


@cache
def widget_esm(name: str) -> str:
    """The ESM of widget file ``name`` as anywidget gets it: its ``import … from "./_dom.js"``
    line replaced by the text of ``_dom.js`` (its ``export`` keywords dropped).

    Raises:
        ValueError: ``name`` imports something else relatively (it would not resolve).
    """
    text = read_asset(name)
    shared = _EXPORT.sub("", read_asset(SHARED)).rstrip("\n") + "\n"
    text = _SHARED_IMPORT.sub(lambda _m: f"// ---- inlined {SHARED}\n{shared}// ----\n", text,
                              count=1)
    if re.search(r'^import .* from "\./', text, re.MULTILINE):
        raise ValueError(f"{name}: only one `import {{…}} from \"./{SHARED}\"` line can be inlined")
    return text
