"""Bytes a finished job adds to a saved notebook, with and without saved widget state
(issue 12, goal ≤ 0.05× the baseline in both cases).

A notebook of ``--jobs`` cells, each ``ji.imagine(..., wait=True)`` displayed (the live job view),
is executed with nbclient against the in-process sandbox, then saved two ways:

* as JupyterLab saves it by default (outputs, no widget state): ``store_widget_state=False``;
* with widget state (nbclient's default, or JupyterLab's "Save Widget State Automatically").

The baseline is what people paste today: the same jobs shown as ``IPython.display.Image`` of
the grid (its PNG embedded as base64). Each figure is the notebook's bytes minus those of the
same notebook with the import cell only, divided by the number of jobs.

Run: ``python benchmarks/bench_notebook_bytes.py [--jobs 10]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout

SETUP = "import jupyter_imagine as ji\nfrom IPython.display import Image"
VIEW = "ji.imagine('a lighthouse at dusk {i}', wait=True)"
IMAGE = "Image(filename=ji.imagine('a lighthouse at dusk {i}', wait=True).grid.path)"


def executed_bytes(cells: list[str], *, widget_state: bool, home: str) -> int:
    """The size of the saved notebook after running ``cells`` in a fresh kernel."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {**os.environ, "JUPYTER_IMAGINE_HOME": home, "JUPYTER_IMAGINE_SANDBOX": "1",
           "JUPYTER_IMAGINE_SANDBOX_SPEED": "1000"}
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            store_widget_state=widget_state)
    # The kernel's own log lines (TCP warnings, shutdown noise) are not the benchmark's output.
    client.execute(env=env, stderr=subprocess.DEVNULL)
    return len(nbformat.writes(nb).encode())


def per_job(template: str, jobs: int, *, widget_state: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="ji-nb-") as home:
        empty = executed_bytes([SETUP], widget_state=widget_state, home=home)
        full = executed_bytes([SETUP, *(template.format(i=i) for i in range(jobs))],
                              widget_state=widget_state, home=home)
    return (full - empty) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    baseline = per_job(IMAGE, args.jobs, widget_state=False)
    plain = per_job(VIEW, args.jobs, widget_state=False)
    saved = per_job(VIEW, args.jobs, widget_state=True)
    print(f"{args.jobs} finished imagine jobs, bytes added to the saved notebook per job")
    print(f"  IPython.display.Image of the grid (baseline)   {baseline:10,.0f} B")
    print(f"  job view, outputs only (JupyterLab's default)  {plain:10,.0f} B   "
          f"ratio {plain / baseline:5.3f} (goal ≤ 0.05)")
    print(f"  job view, with saved widget state              {saved:10,.0f} B   "
          f"ratio {saved / baseline:5.3f} (goal ≤ 0.05)")


if __name__ == "__main__":
    main()
