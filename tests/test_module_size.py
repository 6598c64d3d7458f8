"""Modules stay small enough to read: none outside rsneo/cli over 450 lines (the CLI's modules are lists of
options and help texts)."""

from __future__ import annotations

from pathlib import Path

import rsneo

ROOT = Path(rsneo.__file__).resolve().parent
LIMIT = 450


def test_no_module_outside_cli_is_over_450_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in ROOT.rglob("*.py")
        if "cli" not in path.relative_to(ROOT).parts and (n := len(path.read_text().splitlines())) > LIMIT
    }
    assert not long, f"over {LIMIT} lines: {sorted(long)}"
