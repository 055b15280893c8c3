"""The README's pictures, drawn by the real widgets in JupyterLab against the sandbox.

Written to ``test-artifacts/screenshots/`` (git-ignored) on every run: look at them after changing
the JS or CSS. Only ``JUPYTER_IMAGINE_SCREENSHOTS=1 pytest tests/browser -k screenshots`` (or
``=<folder>``) writes the README's copies, to ``docs/images/``, so a test run leaves the checkout
clean.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from _jupyter import REPO, Notebook
from PIL import Image as PILImage

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts" / "screenshots"
_ASKED = os.environ.get("JUPYTER_IMAGINE_SCREENSHOTS", "")
#: Where the README's pictures go: docs/images/ when asked (``=1``), else with the others.
OUT = REPO / "docs" / "images" if _ASKED == "1" else Path(_ASKED) if _ASKED else ARTIFACTS
#: Pictures the README shows (the others are for looking at after a change).
README = {"job-running", "job-upscale-beneath", "mask-drawer", "gallery", "job-error", "job-dark"}
PROMPT = "a lighthouse at dusk, oil painting"
CELLS = [
    # slow enough to catch a job running; its own history, so the gallery shows these jobs only
    "import os, tempfile\n"
    "os.environ['JUPYTER_IMAGINE_SANDBOX_SPEED'] = '5'\n"
    "os.environ['JUPYTER_IMAGINE_HOME'] = tempfile.mkdtemp()\n"
    "%load_ext jupyter_imagine\n"
    "import jupyter_imagine as ji",
    f"job = %imagine --aspect_ratio 3:2 {PROMPT}\njob",
    "others = [ji.imagine(p, aspect_ratio=ar) for p, ar in [\n"
    "    ('a pine forest in snow at dawn', '1:1'), ('a neon city at night', '16:9'),\n"
    "    ('alien desert dunes at night', '3:2'), ('a stormy sea, lighthouse, moonlight', '1:1'),\n"
    "    ('a lake in the mountains at sunset', '3:2')]]",
    "bad = %imagine a gore scene\nbad",
    "for other in others:\n    await other\nawait job\nji.gallery()",
]


def _shot(page, locator, name: str, margin: int = 8) -> Path:
    """A PNG of ``locator`` with a margin, in 256 colours (README-sized)."""
    locator.scroll_into_view_if_needed()
    time.sleep(0.3)  # let images decode and transitions end
    box = locator.bounding_box()
    clip = {"x": max(0, box["x"] - margin), "y": max(0, box["y"] - margin),
            "width": box["width"] + 2 * margin, "height": box["height"] + 2 * margin}
    image = PILImage.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")
    folder = OUT if name in README else ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    image.save(path, optimize=True)  # no palette: it would lose the small status colours
    return path


def test_screenshots(lab, page):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, lab.root / "screenshots.ipynb")
    page.set_viewport_size({"width": 1100, "height": 1400})
    notebook = Notebook(page, lab, "screenshots.ipynb").open()
    notebook.run_all()
    shots: list[Path] = []

    cell = notebook.cell("job = %imagine")
    view = cell.locator(".ji-lineage").first
    status = cell.locator(".ji-status").first
    status.wait_for()
    deadline = time.monotonic() + 30
    while not re.match(r"Running ([3-8]\d)%", status.inner_text()):
        assert time.monotonic() < deadline, status.inner_text()
        time.sleep(0.05)
    shots.append(_shot(page, view, "job-running"))

    bad = notebook.cell("bad = %imagine").locator(".ji-job")
    bad.get_by_role("alert").wait_for()
    shots.append(_shot(page, bad, "job-error"))

    cell.get_by_role("button", name="U2", exact=True).wait_for(timeout=60_000)
    cell.get_by_role("img", name=f"{PROMPT} (image 4 of 4)").wait_for()
    shots.append(_shot(page, view, "job-grid"))

    cell.get_by_role("button", name="U2", exact=True).click()
    child = cell.locator(".ji-lineage .ji-lineage .ji-job").first
    child.get_by_role("button", name="Vary (Region)").wait_for(timeout=60_000)
    shots.append(_shot(page, view, "job-upscale-beneath"))

    child.get_by_role("button", name="Vary (Region)").click()
    drawer = cell.get_by_role("group", name="Mask drawer")
    canvas = drawer.get_by_role("img", name=re.compile("^Mask canvas"))
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.08, box["y"] + box["height"] * 0.18
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 25):  # a swoop across the sky
        page.mouse.move(x + box["width"] * 0.03 * i, y + box["height"] * 0.004 * i * (12 - i / 2))
    page.mouse.up()
    page.mouse.move(x + box["width"] * 0.8, y + box["height"] * 0.3)
    drawer.get_by_role("textbox", name="Prompt").fill("a lighthouse under the northern lights")
    page.mouse.move(x + box["width"] * 0.78, y + box["height"] * 0.25)
    shots.append(_shot(page, drawer, "mask-drawer"))

    child.locator('.ji-status[data-status="succeeded"]').wait_for()
    gallery_cell = notebook.cell("ji.gallery()")
    gallery_cell.locator(".ji-gallery").wait_for(timeout=60_000)
    notebook.run_cell(gallery_cell)  # again, now that the upscale is in the history
    gallery = gallery_cell.locator(".ji-gallery", has_text="8 jobs")
    page.wait_for_function(
        "g => g.querySelectorAll('.ji-tile img[src]').length"
        " >= 6", arg=gallery.element_handle(), timeout=30_000)
    shots.append(_shot(page, gallery, "gallery"))

    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Dark'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    time.sleep(0.5)
    shots.append(_shot(page, cell.locator(".ji-job").first, "job-dark"))

    for path in shots:
        with PILImage.open(path) as im:
            assert im.width > 300 and im.height > 60, path
        assert path.stat().st_size < 500_000, path
    assert notebook.widget_errors == [], "\n\n".join(notebook.widget_errors)
