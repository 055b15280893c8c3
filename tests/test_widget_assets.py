"""The widgets' ESM and CSS: one copy in js/, shipped inside the wheel, loaded from there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jupyter_imagine.widgets import Gallery, JobView, MaskDrawer
from jupyter_imagine.widgets._assets import SHARED, asset_path, read_asset, widget_esm
from jupyter_imagine.widgets._shared_esm import LOADER, shared_code

REPO = Path(__file__).resolve().parents[1]
ESM = {JobView: "job_view.js", MaskDrawer: "mask_drawer.js", Gallery: "gallery.js"}
ASSETS = [*ESM.values(), SHARED, "_loader.js", "widgets.css"]
#: Each widget's ESM is stored once per kernel (its shared code model) in a notebook that saves
#: widget state; the loader once per widget instance.
MAX_ESM_BYTES = 24_000
MAX_LOADER_BYTES = 3_000


def test_each_widget_loads_its_own_esm_with_the_shared_helpers_inlined_and_the_css():
    shared = (REPO / "js" / SHARED).read_text(encoding="utf-8")
    helpers = re.findall(r"^export (?:function|const) (\w+)", shared, re.MULTILINE)
    assert {"h", "hideFallback", "blobUrl"} <= set(helpers)
    for cls, name in ESM.items():
        source = (REPO / "js" / name).read_text(encoding="utf-8")
        assert read_asset(name) == source and f'from "./{SHARED}";' in source
        assert cls._esm == LOADER and cls._code_name == name and not hasattr(cls, "_css")
        esm = shared_code(name).esm
        assert esm == widget_esm(name)
        assert 'from "./' not in esm  # nothing left that a string module cannot resolve
        for helper in helpers:  # one definition each, inlined, not exported
            assert len(re.findall(rf"^(?:function|const) {helper}\b", esm, re.M)) == 1
            assert not re.search(rf"^export (?:function|const) {helper}\b", esm, re.M)
        assert esm.rstrip().endswith("export default { render };")
        assert not re.search(r"^(?:export )?function h\(", source, re.M), f"{name} copies h()"
        assert shared_code(name).css == read_asset("widgets.css")
        assert len(esm.encode()) < MAX_ESM_BYTES, f"{name} is getting big"
    loader = read_asset("_loader.js")  # the loader as stored per view: the file, less comments
    assert set(LOADER.splitlines()) <= set(loader.splitlines()) and len(LOADER) < len(loader)
    assert "export default { render };" in LOADER and "//" not in LOADER
    assert len(LOADER.encode()) < MAX_LOADER_BYTES
    with pytest.raises(FileNotFoundError, match="reinstall jupyter_imagine"):
        asset_path("missing.js")


@pytest.mark.slow
def test_the_wheel_carries_the_esm_and_an_install_loads_it_from_there(tmp_path):
    """Build the wheel, install it into a fresh venv, import from outside the checkout."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "--quiet", "--disable-pip-version-check", "-w", str(dist)],
        check=True, cwd=tmp_path,
    )
    (wheel,) = dist.glob("jupyter_imagine-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in ASSETS:
            shipped = zf.read(f"jupyter_imagine/widgets/_static/{name}").decode()
            assert shipped == (REPO / "js" / name).read_text(encoding="utf-8")
    assert not any("node_modules" in n or n.startswith("js/") for n in names)

    venv = tmp_path / "venv"  # the dependencies come from here; the package from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                    "--disable-pip-version-check", str(wheel)], check=True)
    probe = f"""
import json, jupyter_imagine
from jupyter_imagine.widgets import Gallery, JobView, MaskDrawer
from jupyter_imagine.widgets._assets import asset_path
from jupyter_imagine.widgets._shared_esm import shared_code
print(json.dumps({{
    "package": jupyter_imagine.__file__,
    "assets": {{n: str(asset_path(n)) for n in {ASSETS!r}}},
    "esm": {{c.__name__: shared_code(c._code_name).esm for c in (JobView, MaskDrawer, Gallery)}},
}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    found = json.loads(out.stdout)
    site = (venv / "lib").resolve()
    assert Path(found["package"]).resolve().is_relative_to(site), found["package"]
    for name, path in found["assets"].items():
        assert Path(path).resolve().is_relative_to(site) and "_static" in path, (name, path)
    for cls, name in ESM.items():
        esm = found["esm"][cls.__name__]
        assert esm and esm == widget_esm(name)
