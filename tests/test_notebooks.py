"""Every notebook in ``notebooks/`` executes top to bottom against the sandbox (nbclient).

The kernel gets a fresh ``JUPYTER_IMAGINE_HOME`` and ``JUPYTER_IMAGINE_SANDBOX_SPEED=1000`` (from
the autouse fixture in ``conftest.py``; the kernel inherits the environment) and this checkout on
``PYTHONPATH``, so it imports the code under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("JUPYTER_IMAGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_SPEED", "1000")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    ))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output for cell in nb.cells if cell.cell_type == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "error"
    ]
    assert errors == []
    if path.stem == "quickstart":  # each job's view is shown once: `await job;` adds nothing
        waited = next(c for c in nb.cells if c.cell_type == "code" and c.source == "await job;")
        assert waited.outputs == []
    if path.stem == "history_analysis":
        texts = "\n".join(
            str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
            for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
        )
        assert "not registered" not in texts
        assert "├──" in texts or "└──" in texts  # the lineage tree
        images = [o for cell in nb.cells for o in cell.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # pragma: no cover - the notebook says so and shows tables only
            assert "matplotlib is not installed" in texts
        else:
            assert len(images) >= 2  # counts and success rate; time distributions
