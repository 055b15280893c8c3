"""The import graph of ``jupyter_imagine``: no cycles, no upward imports, no borrowed privates.

This test is the source of truth for the layer picture in DESIGN.md. Every module has a rank;
a module may import only modules of a lower rank, or modules of its own subpackage (acyclically).
Function-level imports count; imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jupyter_imagine"

#: Low → high, by the top-level name of a module (without the package). A name ending in ``_``
#: is a prefix (``_magic_`` covers ``_magic_parser``).
RANKS: tuple[tuple[str, float], ...] = (
    ("_secrets", 0),
    ("_outage", 0),  # one warning per outage of a repeated step: logging only
    ("errors", 1),
    ("imaging", 2),
    ("_config", 2),
    ("_display", 2),
    ("models", 3),
    ("providers", 4),
    ("sandbox", 4),
    ("_schema", 5),
    ("_frame", 5.5),  # the history frame's build: reads _schema's column table, below the store
    ("_magic_parser", 5),  # pure: splits and parses a magic line from the providers' specs
    ("store", 6),
    ("_transport", 7),
    ("_polling", 7),
    ("_downloads", 7),
    ("_budgets", 7),  # which budgets a job is reserved against, and the refusal
    ("engine", 8),
    ("_spend", 8.5),  # estimates and balances: over the engine, under _batch and api
    ("_pull", 9),
    ("_batch", 9),
    ("api", 10),
    ("widgets", 11),
    ("_accessor", 12),
    ("_spend_frame", 5.5),  # the sums behind df.imagine.spend(): pandas only
    ("magics", 12),
    ("_magic_", 11),  # the magics' private helper modules: _magic_parser, _magic_help …
    ("__main__", 13),
    ("__init__", 13),
)

#: What the sandbox may use from the product: nothing above imaging (DESIGN.md).
SANDBOX_MAY_IMPORT = {"_secrets", "errors", "imaging", "sandbox"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def rank(module: str) -> float:
    """The layer rank of ``module`` (dotted, relative to the package)."""
    top = module.split(".")[0]
    for prefix, value in RANKS:
        if top == prefix or (prefix.endswith("_") and top.startswith(prefix)):
            return value
    raise AssertionError(f"jupyter_imagine.{module} has no rank in tests/test_layers.py RANKS")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level and inside functions."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _runtime_imports_of(child))
            continue
        yield from _runtime_imports_of(node)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _runtime_imports(node)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The dotted in-package target of a relative or absolute ``from`` import, else None."""
    if node.level == 0:
        name = node.module or ""
        if name == "jupyter_imagine" or name.startswith("jupyter_imagine."):
            return name.removeprefix("jupyter_imagine").lstrip(".") or "__init__"
        return None
    base = module.split(".") if module else []
    if not is_package:
        base = base[:-1]
    up = node.level - 1
    if up:
        base = base[:-up] if up <= len(base) else []
    target = ".".join([*base, *(node.module.split(".") if node.module else [])])
    return target or "__init__"


def _edges() -> dict[str, list[tuple[str, int, str | None]]]:
    """module → [(imported module, line, imported name)] for every in-package runtime import."""
    graph: dict[str, list[tuple[str, int, str | None]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        out = graph.setdefault(module, [])
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("jupyter_imagine"):
                        target = alias.name.removeprefix("jupyter_imagine").lstrip(".")
                        out.append((target or "__init__", node.lineno, None))
                continue
            target = _resolve(module, is_package, node)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target != "__init__" else alias.name
                if (PACKAGE / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    PACKAGE / Path(*sub.split(".")) / "__init__.py"
                ).exists():
                    out.append((sub, node.lineno, None))  # `from . import module`
                else:
                    out.append((target, node.lineno, alias.name))
    return graph


GRAPH = _edges()


def test_every_module_has_a_rank() -> None:
    for module in GRAPH:
        rank(module if module else "__init__")


def test_no_upward_or_sideways_import() -> None:
    wrong: set[str] = set()
    for module, edges in GRAPH.items():
        for target, line, _name in edges:
            if module.split(".")[0] == target.split(".")[0]:
                continue  # inside one subpackage (or the module itself): the cycle test covers it
            if rank(target) >= rank(module):
                wrong.add(f"{module}:{line} imports {target} ({rank(target)} ≥ {rank(module)})")
    listing = "\n".join(sorted(wrong))
    assert not wrong, f"imports that go up (or sideways) the layer order:\n{listing}"


def test_sandbox_depends_on_nothing_above_imaging() -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module, edges in GRAPH.items()
        if module.split(".")[0] == "sandbox"
        for target, line, _name in edges
        if target.split(".")[0] not in SANDBOX_MAY_IMPORT
    ]
    assert not wrong, "the sandbox imports the product:\n" + "\n".join(wrong)


def test_no_private_name_imported_from_another_module() -> None:
    wrong = [
        f"{module}:{line} imports {name} from {target}"
        for module, edges in GRAPH.items()
        for target, line, name in edges
        if name and name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert not wrong, "private names borrowed across modules:\n" + "\n".join(wrong)


def _cycle(graph: dict[str, list[tuple[str, int, str | None]]]) -> list[str] | None:
    """One import cycle in ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target, _line, _name in graph.get(node, ()):
            if target not in graph or target == node:
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if not state.get(target) and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if not state.get(node) and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from .store import Store\n", ["store"]),
        ("def f():\n    from .engine import Engine\n", ["engine"]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .api import x\n", []),
        ("import jupyter_imagine.models\n", ["models"]),
    ],
)
def test_the_walker_sees_function_level_imports_and_skips_type_checking(
    source: str, expected: list[str]
) -> None:
    tree = ast.parse(source)
    found = []
    for node in _runtime_imports(tree):
        if isinstance(node, ast.ImportFrom):
            if (target := _resolve("magics", False, node)) is not None:
                found.append(target)
        else:
            found.extend(a.name.removeprefix("jupyter_imagine.") for a in node.names)
    assert found == expected


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {"a": [("b", 1, None)], "b": [("c", 1, None)], "c": [("a", 1, None)], "d": []}
    assert _cycle(planted) == ["a", "b", "c", "a"]
    assert _cycle({"a": [("b", 1, None)], "b": []}) is None
