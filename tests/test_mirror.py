"""The tests mirror the package: every rsneo module with logic (a function or a method) has its own test
module, `rsneo/X/Y.py` -> `tests/X/test_Y.py`, so a reader finds a module's specification by its name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rsneo"


def has_logic(path: Path) -> bool:
    """A function or a method anywhere in the module; re-exports, constants and bare exception classes have
    none."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for node in ast.walk(tree))


def mirror(module: Path) -> Path:
    relative = module.relative_to(PACKAGE)
    return REPO / "tests" / relative.parent / f"test_{relative.name}"


MODULES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if p.name not in ("__init__.py", "__main__.py") and "assets" not in p.parts
)


def test_every_module_with_logic_has_its_test_module():
    missing = [str(m.relative_to(REPO)) for m in MODULES if has_logic(m) and not mirror(m).is_file()]
    assert not missing, f"modules with logic and no tests/<package>/test_<module>.py: {missing}"


@pytest.mark.parametrize(
    ("source", "logic"),
    [
        ('"""Re-exports."""\nfrom x import y\n__all__ = ["y"]\n', False),
        ("class Oops(Exception):\n    '''A named error.'''\n", False),
        ("def f():\n    return 1\n", True),
        ("class A:\n    def go(self):\n        pass\n", True),
    ],
)
def test_logic_means_a_function_or_a_method(source, logic, tmp_path):
    path = tmp_path / "module.py"
    path.write_text(source)
    assert has_logic(path) is logic
