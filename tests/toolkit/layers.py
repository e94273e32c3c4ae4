"""The shipped modules' import graph: its cycles and its upward imports (both should be none).

Every import statement counts, inside functions too. ``python -m tests.toolkit.layers`` prints both lists
and exits 1 when either is not empty; ``tests/test_layers.py`` runs it in the suite.

Layers, lowest first; a module may import its own layer and the ones below it:
"""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qa_tasks", "finetune", "leaderboards", "qa_pack_demo")
# (layer, module-name prefixes); the longest matching prefix decides
LAYERS = (
    ("ground", ("qa_tasks",)),
    ("rollout", ("qa_tasks.rollout",)),
    ("harness", ("qa_tasks.harness", "qa_tasks._startup")),
    ("families", ("qa_tasks.squad", "qa_tasks.recipe_mpr", "qa_tasks.math")),
    ("apps", ("finetune", "leaderboards")),
    ("demo", ("qa_pack_demo",)),
    ("tools", ("bench", "tests")),  # not shipped: nothing shipped may import them
)
# modules of one layer that must not import each other (siblings, not a stack)
APART = (("finetune", "leaderboards"), ("qa_tasks.squad", "qa_tasks.recipe_mpr", "qa_tasks.math"))
__doc__ += "\n".join(f"- {name}: {', '.join(prefixes)}" for name, prefixes in LAYERS) + "\n"


def modules() -> dict[str, Path]:
    """Module name -> file, for every shipped module."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The shipped modules that module ``name`` imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target.partition(".")[0] in ("bench", "tests"):
                found.add(target.partition(".")[0])
                continue
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int:
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes if _matches(name, p)),
               default=(0, -1))
    return best[1]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, one at a time: each found cycle's first edge is dropped and the search repeats."""
    edges = {k: set(v) & set(edges) for k, v in edges.items()}
    found = []
    while True:
        try:
            tuple(graphlib.TopologicalSorter(edges).static_order())
            return found
        except graphlib.CycleError as e:
            cycle = e.args[1]
            found.append(cycle)
            edges[cycle[1]].discard(cycle[0])  # graphlib lists a cycle as [a, ..., a] along dependency order


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs that go to a higher layer or between modules kept apart."""
    out = []
    for name, targets in edges.items():
        for target in sorted(targets):
            apart = any(_matches(name, a) and _matches(target, b) for group in APART for a in group for b in group
                        if a != b)
            if layer_of(target) > layer_of(name) or apart:
                out.append((name, target))
    return sorted(out)


def main() -> int:
    edges = graph()
    found_cycles, found_upward = cycles(edges), upward(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports between them")
    print(f"cycles: {len(found_cycles)}")
    for cycle in found_cycles:
        print("  " + " -> ".join(cycle))
    print(f"upward imports: {len(found_upward)}")
    for name, target in found_upward:
        print(f"  {name} ({LAYERS[layer_of(name)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    return 1 if found_cycles or found_upward else 0


if __name__ == "__main__":
    sys.exit(main())
