"""Shape rules for the package's code: short functions, and a docstring on every module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jupyter_imagine"
MAX_FUNCTION_LINES = 80


def _trees() -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_no_function_over_80_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}() has "
        f"{node.end_lineno - node.lineno + 1} lines"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_every_module_says_what_it_is_for() -> None:
    missing = [
        str(path.relative_to(PACKAGE.parent))
        for path, tree in _trees()
        if path.stat().st_size and not (ast.get_docstring(tree) or "").strip()
    ]
    assert not missing, "modules without a docstring:\n" + "\n".join(missing)
