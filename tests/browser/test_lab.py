"""The quick start in a real JupyterLab: the job view, a click, the mask drawer, a saved and
reopened notebook, and the same quick start once in Notebook 7."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from _jupyter import REPO, Notebook

from jupyter_imagine.imaging import read_image_text

pytestmark = pytest.mark.browser

QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"
PROMPT = "a lighthouse at dusk, oil painting"
#: Accessible names of the grid's buttons: the labels, and words after the emoji-only one.
GRID = ("U1", "U2", "U3", "U4", "🔄 Reroll", "V1", "V2", "V3", "V4")
JOB_CELL = "job = %imagine"
READBACK_CELL = "drawn = await ji.job(job_id)"

#: What the first test leaves for the second: the saved notebook's name.
_saved: dict[str, str] = {}


def _grid_ready(cell, prompt: str = PROMPT) -> None:
    """Four images with the prompt as alt text and every grid button, by accessible name."""
    for i in range(1, 5):
        cell.get_by_role("img", name=f"{prompt} (image {i} of 4)").first.wait_for()
    for label in GRID:
        button = cell.get_by_role("button", name=label, exact=True).first
        button.wait_for()
        assert button.is_enabled(), label


def _lineage(png: bytes) -> list[tuple[str, str, int]]:
    """(kind, status, number of images) of each job drawn in a static fallback."""
    rows = json.loads(read_image_text(png).get("jupyter_imagine.lineage", "[]"))
    return [(r["kind"], r["status"], r["images"]) for r in rows]


def test_quickstart_click_upscale_and_paint_a_mask(lab, page):
    lab.add_notebook(QUICKSTART, "quickstart.ipynb")
    nb = Notebook(page, lab, "quickstart.ipynb").open()
    nb.run_all()
    job_cell = nb.cell(JOB_CELL)
    _grid_ready(job_cell)
    nb.wait_idle()
    readback = nb.cell(READBACK_CELL)
    readback_text = readback.locator(".jp-OutputArea").inner_text()
    assert "changed inside the mask 100%, outside 0 px" in readback_text

    # an image opens at full size (sent on request); Escape closes it
    job_cell.get_by_role("img", name=f"{PROMPT} (image 3 of 4)").first.click()
    full = page.get_by_role("dialog", name="Full-size image 3")
    full.get_by_role("link", name="Download").wait_for()
    page.wait_for_function("d => d.querySelector('img').naturalWidth === 512",
                           arg=full.element_handle())
    page.keyboard.press("Escape")
    full.wait_for(state="detached")

    # U2: the upscale's view appears beneath its parent, in the same output
    job_cell.get_by_role("button", name="U2", exact=True).first.click()
    child = job_cell.locator(".ji-lineage .ji-lineage .ji-job").first
    child.get_by_text("U2 · upscale").wait_for()
    child.get_by_role("img", name=PROMPT, exact=True).wait_for()
    vary_region = child.get_by_role("button", name="Vary (Region)")
    vary_region.wait_for()

    # Vary (Region): the drawer opens over the upscale; paint a stroke, try the keys, submit
    vary_region.click()
    drawer = job_cell.get_by_role("group", name="Mask drawer")
    canvas = drawer.get_by_role("img", name=re.compile(r"^Mask canvas, 1024×684"))
    canvas.wait_for()
    assert drawer.get_attribute("data-lm-suppress-shortcuts") is not None
    assert drawer.get_by_role("textbox", name="Prompt").input_value() == PROMPT
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.25
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.3, y0 + box["height"] * 0.1, steps=12)
    page.mouse.up()
    assert drawer.evaluate("el => el === document.activeElement")  # painting focuses it
    cells_before = nb.cells().count()
    page.keyboard.press("e")  # JupyterLab would change the cell type, B would insert a cell …
    assert drawer.get_by_role("button", name="Eraser").get_attribute("aria-pressed") == "true"
    page.keyboard.press("b")
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+y")
    assert drawer.get_by_role("button", name="Brush").get_attribute("aria-pressed") == "true"
    assert nb.cells().count() == cells_before
    painted = drawer.evaluate("el => el._mask.coverage()")
    assert 0.005 < painted < 0.2
    drawer.get_by_role("textbox", name="Prompt").fill("a lighthouse under the northern lights")
    drawer.get_by_role("button", name="Submit").click()

    # the drawer closes into the child's view; a later cell reads the result back
    drawn = job_cell.locator(".ji-lineage .ji-lineage .ji-lineage .ji-job").first
    drawn.locator(".ji-kind").get_by_text("Vary (Region)", exact=True).wait_for()  # kind once
    drawn.locator('.ji-status[data-status="succeeded"]').wait_for(timeout=90_000)
    assert drawer.count() == 0
    drawn_id = drawn.locator(".ji-id").inner_text()
    nb.run_cell(readback)
    readback.locator(".jp-OutputArea", has_text=drawn_id).wait_for()
    text = readback.locator(".jp-OutputArea").inner_text()
    match = re.search(rf"vary_region {drawn_id} succeeded: ([\d.]+)% of the image masked; "
                      r"changed inside the mask (\d+)%, outside (\d+) px", text)
    assert match, text
    assert abs(float(match[1]) / 100 - painted) < 0.01
    assert int(match[2]) >= 90 and match[3] == "0"

    # saved: the job cell keeps a static PNG of the whole lineage, final states included (the
    # hidden fallback is updated in the background: wait for the redrawn grid to be in it)
    final = [("imagine", "succeeded", 4), ("upscale", "succeeded", 1),
             ("vary_region", "succeeded", 4)]
    hidden = job_cell.locator(".ji-hidden .jp-RenderedImage img")
    deadline = time.monotonic() + 30
    while _lineage(base64.b64decode(hidden.get_attribute("src").split(",", 1)[1])) != final:
        assert time.monotonic() < deadline, "the static fallback was not brought up to date"
        time.sleep(0.2)
    nb.save()
    saved = json.loads((lab.root / "quickstart.ipynb").read_text())
    cell = next(c for c in saved["cells"] if "".join(c["source"]).startswith(JOB_CELL))
    fallback, live = cell["outputs"]
    assert fallback["output_type"] == "display_data" and "image/jpeg" in fallback["data"]
    assert "application/vnd.jupyter.widget-view+json" in live["data"]
    png = base64.b64decode(fallback["data"]["image/jpeg"])
    assert "jupyter_imagine.view" in read_image_text(png)
    assert _lineage(png) == final  # the grid, the upscale and the redrawn grid
    assert "succeeded" in "".join(fallback["data"]["text/plain"])
    assert nb.widget_errors == [], "\n\n".join(nb.widget_errors)
    _saved["name"] = "quickstart.ipynb"


def test_reopened_notebook_shows_the_static_fallback(lab, page):
    if "name" not in _saved:
        pytest.skip("needs the notebook saved by the previous test")
    lab.shutdown_kernels()  # the live models are gone, as after closing the notebook
    nb = Notebook(page, lab, _saved["name"]).open()
    job_cell = nb.cell(JOB_CELL)
    image = job_cell.locator(".jp-RenderedImage img").first
    image.wait_for()
    assert image.is_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 560
    # JupyterLab's own line for the dead widget, next to the picture (see widgets/_bundle.py)
    job_cell.get_by_text("Error displaying widget: model not found").wait_for()
    assert job_cell.locator(".ji-job").count() == 0
    # every job output of the quick start has its picture
    assert nb.page.locator(".jp-RenderedImage img:visible").count() >= 6  # job (once), up,
    # var, the reroll, region, the gallery


#: Runs two imagine cells with nbclient and saves the notebook with widget state (in a child
#: process: Playwright's loop on this thread would break nbclient's).
_SAVE_WITH_STATE = """
import subprocess, sys, nbformat
from nbclient import NotebookClient
cells = ["import jupyter_imagine as ji", *(f"ji.imagine({p!r}, wait=True)" for p in sys.argv[2:])]
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True).execute(
    stderr=subprocess.DEVNULL)
nbformat.write(nb, sys.argv[1])
"""


def test_reopened_with_saved_widget_state_each_job_keeps_its_picture(lab, page):
    """Saved with widget state, reopened (trusted) without the kernel that made it: JupyterLab
    renders the views again from the saved state, their code from the one shared model; the
    thumbnails were never saved and no kernel answers for them, so each job's static picture
    stays in sight and the card, whose buttons would do nothing, steps aside for it. With no
    kernel at all JupyterLab does not restore widgets: the picture shows.
    """
    import subprocess
    import sys

    prompts = ["a lighthouse at dusk", "a red fox in snow"]
    path = lab.root / "saved_state.ipynb"
    subprocess.run([sys.executable, "-c", _SAVE_WITH_STATE, str(path), *prompts], check=True,
                   env={**lab.env, "JUPYTER_IMAGINE_SANDBOX_SPEED": "1000"}, timeout=300)
    saved = json.loads(path.read_text())
    models = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    code = [m for m in models.values() if "esm" in m["state"]]
    assert len(code) == 1  # the job view's code, once for both views
    views = [m["state"] for m in models.values() if m["state"].get("_code")]
    assert len(views) == 2 and all(len(v["_esm"]) < 3000 and "images" not in v for v in views)
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(path)], env=lab.env,
                   check=True, capture_output=True)
    no_kernel = lab.root / "saved_state_no_kernel.ipynb"
    saved["metadata"] = {k: v for k, v in saved["metadata"].items()
                         if k not in ("kernelspec", "language_info")}
    no_kernel.write_text(json.dumps(saved))
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(no_kernel)], env=lab.env,
                   check=True, capture_output=True)

    nb = Notebook(page, lab, path.name).open()  # a new kernel: it knows none of these models
    for prompt in prompts:
        cell = nb.cell(prompt)
        card = cell.locator(".ji-job")
        card.get_by_text("Done").wait_for(state="attached")  # rendered from the saved state
        card.wait_for(state="hidden")  # no kernel answered: it makes way for the picture
        picture = cell.locator(".jp-RenderedImage img")
        assert picture.is_visible()
        assert picture.evaluate("img => img.complete && img.naturalWidth") == 560
        assert cell.locator(".ji-job .ji-cell").count() == 0  # no thumbnails without a kernel
        # the widget frames around the card are "disconnected" (the new kernel knows none of
        # these models); their red broken-link marks go with the card
        frames = cell.locator(".jupyter-widgets-disconnected")
        assert frames.count() >= 1
        marks = frames.evaluate_all(
            "els => els.map(e => getComputedStyle(e, '::before').content)")
        assert set(marks) == {"none"}, marks
    page.screenshot(path=str(lab.base / "saved-state-reopened.png"), full_page=True)
    assert nb.widget_errors == [], "\n\n".join(nb.widget_errors)

    page.goto(lab.url(f"/lab/tree/{no_kernel.name}?reset"))
    page.locator(".jp-Dialog button", has_text="No Kernel").first.click()
    pictures = page.locator(".jp-RenderedImage img:visible")
    pictures.nth(1).wait_for()
    assert pictures.count() == 2
    assert pictures.first.evaluate("img => img.complete && img.naturalWidth") == 560


def test_quickstart_in_notebook_7(notebook7, page):
    notebook7.add_notebook(QUICKSTART, "quickstart.ipynb")
    nb = Notebook(page, notebook7, "quickstart.ipynb").open()
    nb.run_all()
    job_cell = nb.cell(JOB_CELL)
    _grid_ready(job_cell)
    job_cell.get_by_role("button", name="U3", exact=True).first.click()
    child = job_cell.locator(".ji-lineage .ji-lineage .ji-job").first
    child.get_by_text("U3 · upscale").wait_for()
    child.get_by_role("button", name="Vary (Region)").wait_for()
    nb.wait_idle()
    assert nb.widget_errors == [], "\n\n".join(nb.widget_errors)
