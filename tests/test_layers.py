"""rsneo's import graph, read from the source with `ast`: no cycles and no upward imports.

Layers, top to bottom: cli -> demo -> predict/train -> heads -> data -> io/model -> sensors -> errors/atomic.
A module may import its own package and any lower layer; peers in one layer (io and model, predict and train)
do not import each other. Imports inside functions count too: hiding a cycle in a function does not remove
it. Only `if __name__ == "__main__":` blocks are left out (they run as a script, never on import).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import rsneo

ROOT = Path(rsneo.__file__).resolve().parent
LAYERS = {
    "errors": 0,
    "atomic": 0,
    "sensors": 1,
    "metrics": 1,  # accuracy scores (torchmetrics, scikit-learn): used by baselines, train and accuracy
    "io": 2,
    "model": 2,
    "data": 3,
    "heads": 4,
    "baselines": 4,  # training-free baselines, beside the learned heads
    "predict": 5,
    "train": 5,
    "demo": 6,
    "accuracy": 6,  # evaluate / assess: models and maps measured through the predictors
    "cli": 7,
}
# Cycles that exist on main and wait for their area to break them; each entry names where it came from. An
# entry that is no longer a cycle fails the test too, so the list only shrinks.
# Imports against the layer order on main, each waiting for its area, with the same shrink-only rule.
KNOWN_AGAINST_ORDER: set[str] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def existing_module(dotted: str) -> str | None:
    """The longest prefix of `dotted` that is a module or package of rsneo (`from a.b import c` may name
    a function `c` of module `a.b` or a module `a.b.c`)."""
    while dotted:
        path = ROOT.parent / dotted.replace(".", "/")
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def is_main_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)


def imports_of(path: Path) -> set[str]:
    """The rsneo modules `path` imports, anywhere but under `if __name__ == "__main__":`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_main_block(node):
            return
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            targets = []
        for target in targets:
            if target.split(".")[0] == "rsneo" and (module := existing_module(target)) and module != name:
                found.add(module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) == 1:
        return 0, "rsneo"  # the package root: the version string only
    return LAYERS[parts[1]], parts[1]


def test_every_module_has_a_layer(graph):
    unknown = sorted({m.split(".")[1] for m in graph if "." in m} - set(LAYERS))
    assert not unknown, f"add these to LAYERS (and to the layer list in docs/internals.md): {unknown}"


def test_no_upward_or_sideways_imports(graph):
    bad = []
    for module, targets in graph.items():
        rank, package = layer(module)
        for target in targets:
            target_rank, target_package = layer(target)
            if target_package != package and target_rank >= rank and target_package != "rsneo":
                bad.append(f"{module} -> {target}")
    assert not set(bad) - KNOWN_AGAINST_ORDER, "imports against the layer order:\n" + "\n".join(
        sorted(set(bad) - KNOWN_AGAINST_ORDER)
    )
    assert not KNOWN_AGAINST_ORDER - set(bad), "fixed: remove them from KNOWN_AGAINST_ORDER"


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    found = {frozenset(c) for c in cycles}
    assert not found - KNOWN_CYCLES, f"import cycles: {sorted(sorted(c) for c in found - KNOWN_CYCLES)}"
    assert not KNOWN_CYCLES - found, "no longer cycles: remove them from KNOWN_CYCLES"


def test_the_checker_sees_function_level_imports_and_relative_ones(tmp_path, monkeypatch):
    """The graph must include what a cycle would hide in a function body, so the test above can fail."""
    fake = tmp_path / "rsneo"
    (fake / "io").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "io" / "__init__.py").write_text("")
    (fake / "io" / "a.py").write_text("def f():\n    from rsneo.io.b import g\n")
    (fake / "io" / "b.py").write_text("from .a import f\nif __name__ == '__main__':\n    import rsneo.cli\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    assert imports_of(fake / "io" / "a.py") == {"rsneo.io.b"}
    assert imports_of(fake / "io" / "b.py") == {"rsneo.io.a"}


# rsneo.predict in floors: the engine, the engine's products (maps), the products. A floor imports only the
# floors below it; a product imports no other product (ask reads its questions through answers, one product).
PREDICT_FLOORS = {
    "sliding_window": 0, "resume": 0, "inputs": 0, "requests": 0, "change_classes": 0,
    "maps": 1,
    "change_outputs": 2, "segment": 2, "change": 2, "buildings": 2, "answers": 2, "ask": 2,
}  # fmt: skip
ONE_PRODUCT = {("rsneo.predict.ask", "rsneo.predict.answers")}


def predict_floor(module: str) -> tuple[int, str] | None:
    parts = module.split(".")
    if parts[:2] != ["rsneo", "predict"] or len(parts) < 3:
        return None
    return PREDICT_FLOORS[parts[2]], parts[2]


def test_every_predict_module_has_a_floor(graph):
    names = {m.split(".")[2] for m in graph if m.startswith("rsneo.predict.")}
    assert names <= set(PREDICT_FLOORS), f"add to PREDICT_FLOORS: {sorted(names - set(PREDICT_FLOORS))}"


def test_predict_floors_point_down_and_products_do_not_import_each_other(graph):
    bad = []
    for module, targets in graph.items():
        here = predict_floor(module)
        if here is None:
            continue
        for target in targets:
            there = predict_floor(target)
            if there is None or there[1] == here[1] or (module, target) in ONE_PRODUCT:
                continue
            products = here[0] == there[0] == 2 and "change_outputs" not in (there[1],)
            if there[0] > here[0] or products:
                bad.append(f"{module} -> {target}")
    assert not bad, "predict imports against its floors:\n" + "\n".join(sorted(bad))
