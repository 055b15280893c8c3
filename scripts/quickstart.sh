#!/usr/bin/env bash
# Install jupyter_imagine with JupyterLab and open the quick start against the sandbox.
#   bash scripts/quickstart.sh             open notebooks/quickstart.ipynb in JupyterLab
#   bash scripts/quickstart.sh --headless  execute it without a browser (writes quickstart.out.ipynb)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e . jupyterlab ipykernel nbclient
if [ "${1:-}" = "--headless" ]; then
  "$PYTHON" - <<'PY'
import nbformat
from nbclient import NotebookClient

nb = nbformat.read("notebooks/quickstart.ipynb", as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
nbformat.write(nb, "notebooks/quickstart.out.ipynb")
print("executed: notebooks/quickstart.out.ipynb")
PY
else
  exec "$PYTHON" -m jupyter lab notebooks/quickstart.ipynb
fi
