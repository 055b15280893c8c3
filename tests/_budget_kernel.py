"""One kernel of tests/test_budget_kernels.py: a batch under the session's budget.

Run as ``python tests/_budget_kernel.py SPEC.json``; SPEC has ``budget`` (for
``ji.configure``), ``prompts``, ``name``, ``concurrency``, ``go`` (a file to wait for, so the
kernels start together) and ``out`` (where the result goes as JSON).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jupyter_imagine as ji


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ji.configure(budget=spec["budget"])
    go = Path(spec["go"])
    while not go.exists():
        time.sleep(0.01)
    df = ji.batch(spec["prompts"], name=spec["name"], max_concurrency=spec["concurrency"],
                  progress=False)
    out = {"status": [str(s) for s in df["status"]], "unsubmitted": df.attrs["unsubmitted"],
           "errors": [e if isinstance(e, str) else None for e in df["error"]]}
    Path(spec["out"]).write_text(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
