"""The import graph of `harperbq` has no cycle and no arrow up a layer (issue 16 item 2).

Read from the source with `ast`, so it stays true as code moves: every `import` and
`from ... import` (absolute or relative) anywhere in a module, at module level or inside a
function, is an edge. Imports under `if TYPE_CHECKING:` are edges for the layer rule (an
annotation naming a higher layer is still a dependency on it) but not for the cycle rule: they
never run, and two modules of one package naming each other's types is not a load cycle.

The layers, lowest first (docs/architecture.md "Layers" has the same list):

0. leaves: the package root, `config`, `metrics`, `logs`, `memory`, `cost`, `phases`, `retry`,
   `times`, `profile`, and the small pure helpers of `PURE_HELPERS`
   (they import nothing of harperbq);
1. clients: `bigquery/`, `harper/` (which know nothing of each other);
2. services: `sync/`, `synth/`, `devstack/` (the local stack: processes, no client code),
   `readiness`;
3. the control plane and the demo: `server`, `demo`;
4. entry points: `cli/`;
5. `__main__` (`python -m harperbq`).

A module may import its own group (same top-level package or module), any leaf, and any group
of a lower layer; never a higher layer, nor a sibling group of its own layer above the leaves.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "harperbq"

LAYERS: dict[str, int] = {
    ROOT: 0,
    "config": 0,
    "metrics": 0,
    "logs": 0,
    "memory": 0,
    "cost": 0,
    "retry": 0,
    "profile": 0,
    "times": 0,
    "phases": 0,
    "bigquery": 1,
    "harper": 1,
    "sync": 2,
    "synth": 2,
    "devstack": 2,
    "readiness": 2,
    "server": 3,
    "demo": 3,
    "cli": 4,
    "__main__": 5,
}
LAYER_NAMES = ("leaf", "client", "service", "control plane", "entry point", "python -m")

PURE_HELPERS = {
    # config checks that a named body encoding's library is installed; the module is Harper's
    # wire format and imports nothing of harperbq, so it stays with harper/ as a leaf.
    "harperbq.harper.encoding",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool


def module_names(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is_package) for every module under src/harperbq."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of the statements under `if TYPE_CHECKING:` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _targets(name: str, is_package: bool, node: ast.stmt, known: set[str]) -> list[str]:
    """The harperbq modules one import statement loads (the package and any submodule named)."""
    found: list[str] = []
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        found = [module]
        found += [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
    return [t for t in found if t in known and t != name]


def import_graph(src: Path = SRC) -> list[Edge]:
    """Every import edge between harperbq modules, wherever the import statement stands."""
    modules = module_names(src)
    known = set(modules)
    edges: list[Edge] = []
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typed = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(name, is_package, node, known):
                    edges.append(Edge(name, target, node.lineno, node.lineno in typed))
    return edges


def group(module: str) -> str:
    """The top-level part of a module's name: `harperbq.sync.engine` -> `sync`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def layer(module: str) -> int:
    if module in PURE_HELPERS:
        return 0
    try:
        return LAYERS[group(module)]
    except KeyError:
        raise AssertionError(
            f"module {module} is in no layer: add {group(module)!r} to LAYERS in "
            "tests/unit/test_layering.py and to docs/architecture.md 'Layers'"
        ) from None


def layer_violations(edges: list[Edge]) -> list[str]:
    """`source -> target` for each import of a higher layer or of a sibling group."""
    bad: list[str] = []
    for e in edges:
        if group(e.source) == group(e.target) and e.source not in PURE_HELPERS:
            continue
        low, high = layer(e.target), layer(e.source)
        if low == 0 and high == 0:
            continue  # leaves may use each other; the cycle rule still holds
        if low >= high:
            bad.append(
                f"{e.source} ({LAYER_NAMES[high]}) -> {e.target} ({LAYER_NAMES[low]}) "
                f"at line {e.line}"
            )
    return sorted(set(bad))


def find_cycle(edges: list[Edge]) -> list[str] | None:
    """One cycle of runtime imports as [a, b, ..., a], or None."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.type_only:
            graph.setdefault(e.source, set()).add(e.target)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_every_module_has_a_layer() -> None:
    for name in module_names():
        layer(name)


def test_pure_helpers_import_nothing_of_harperbq() -> None:
    edges = [e for e in import_graph() if e.source in PURE_HELPERS]
    assert edges == [], f"a pure helper imports harperbq modules: {edges}"


def test_no_import_up_a_layer() -> None:
    bad = layer_violations(import_graph())
    assert bad == [], "imports up a layer or across siblings:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_config_and_metrics_are_leaves() -> None:
    """The issue names these two: they import leaves only (a regression here breaks the CLI's
    light start and lets metrics pull in the engine)."""
    for source in ("harperbq.config", "harperbq.metrics"):
        above = [e.target for e in import_graph() if e.source == source and layer(e.target) > 0]
        assert above == [], f"{source} imports {above}"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_sees_relative_function_level_and_cycles(tmp_path: Path) -> None:
    """The checker itself can fail: a function-level relative import up a layer and a cycle."""
    _write(
        tmp_path,
        {
            "harperbq/__init__.py": "",
            "harperbq/config.py": "def f():\n    from .sync import engine\n",
            "harperbq/sync/__init__.py": "",
            "harperbq/sync/engine.py": "from . import runner\n",
            "harperbq/sync/runner.py": "from harperbq.sync.engine import x\n",
            "harperbq/cli/__init__.py": "",
            "harperbq/cli/main.py": "",
            "harperbq/sync/typed.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from harperbq.cli import main\n"
            ),
        },
    )
    edges = import_graph(tmp_path)
    bad = layer_violations(edges)
    assert any(b.startswith("harperbq.config (leaf) -> harperbq.sync.engine") for b in bad)
    assert any(b.startswith("harperbq.sync.typed (service) -> harperbq.cli") for b in bad)
    cycle = ["harperbq.sync.engine", "harperbq.sync.runner", "harperbq.sync.engine"]
    assert find_cycle(edges) == cycle
