"""The widgets' layout in a real JupyterLab, measured by element boxes: the 2×2 grid uses the
card's width, Cancel stays on the status's line whatever the badges, the mask drawer fits inside
the card it was opened from, and no button's name is only an emoji."""

from __future__ import annotations

import nbformat
import pytest
from _jupyter import Notebook

pytestmark = pytest.mark.browser

PROMPT = "a lighthouse at dusk"
CELLS = [
    "%load_ext jupyter_imagine\nimport jupyter_imagine as ji\nimport numpy as np",
    f"job = %imagine --aspect_ratio 3:2 {PROMPT}\njob",
    # a Vary (Region) that keeps running (the sandbox's hang word): the longest badge, with Cancel
    "up = (await job).upscale(2)\nawait up\n"
    "mask = np.zeros((684, 1024), bool)\nmask[100:300, 200:500] = True\n"
    "held = up.vary_region(mask, prompt='northern lights sandbox:hang')\nheld",
]
#: Pixels two boxes may differ by and still count as on one line / inside.
SLACK = 1.5


def _inner_width(locator) -> float:
    """The content width of ``locator``'s element (its box less borders and padding)."""
    return locator.evaluate(
        "el => { const s = getComputedStyle(el); return el.clientWidth"
        " - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight); }")


def _same_line(a: dict, b: dict) -> bool:
    """Two boxes share a text line: each one's top is above the other's bottom."""
    return a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def _within(inner: dict, outer: dict) -> bool:
    return (inner["x"] >= outer["x"] - SLACK
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + SLACK)


@pytest.fixture
def notebook(lab, page):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, lab.root / "layout.ipynb")
    page.set_viewport_size({"width": 1100, "height": 1400})
    notebook = Notebook(page, lab, "layout.ipynb").open()
    notebook.run_all()
    yield notebook
    assert notebook.widget_errors == [], "\n\n".join(notebook.widget_errors)


def test_grid_badges_and_drawer_fit_their_cards(notebook, page):
    cell = notebook.cell("job = %imagine")
    card = cell.locator(".ji-job").first
    cell.get_by_role("img", name=f"{PROMPT} (image 4 of 4)").first.wait_for()
    grid = card.locator(".ji-media.ji-grid")
    width = grid.bounding_box()["width"]
    assert width >= 0.9 * _inner_width(card), (width, _inner_width(card))

    # no button depends on an emoji font for its name
    names = card.locator(".ji-actions button").evaluate_all("bs => bs.map(b => b.textContent)")
    assert "🔄 Reroll" in names and all(any(c.isalnum() for c in n) for n in names), names

    # the running Vary (Region): its kind once, Cancel on the status's line
    held = notebook.cell("held = up.vary_region").locator(".ji-job").first
    cancel = held.get_by_role("button", name="Cancel")
    cancel.wait_for()
    assert held.locator(".ji-kind").inner_text() == "Vary (Region)"
    status = held.locator(".ji-status")
    for viewport in (1100, 720):  # wide, and narrow enough to squeeze the badges
        page.set_viewport_size({"width": viewport, "height": 1400})
        page.wait_for_timeout(300)
        assert _same_line(cancel.bounding_box(), status.bounding_box()), viewport
        assert _within(held.locator(".ji-head").bounding_box(), held.bounding_box()), viewport
    page.set_viewport_size({"width": 1100, "height": 1400})

    # the drawer opened from an upscale beneath the grid stays inside the grid's card
    cell.get_by_role("button", name="U2", exact=True).first.click()
    child = cell.locator(".ji-lineage .ji-lineage .ji-job").first
    child.get_by_role("button", name="Vary (Region)").click()
    drawer = cell.get_by_role("group", name="Mask drawer")
    drawer.wait_for()
    drawer.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    assert _within(drawer.bounding_box(), card.bounding_box())
    assert _within(child.bounding_box(), card.bounding_box())
    column = cell.locator(".ji-lineage .ji-lineage").first  # the upscale's lineage box
    assert _within(drawer.bounding_box(), column.bounding_box())

    cancel.click()
    held.locator('.ji-status[data-status="cancelled"]').wait_for()
