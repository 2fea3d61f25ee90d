"""psrq.formats sits below the stages: it imports no stage, so every stage can use it."""

from __future__ import annotations

import ast
from pathlib import Path

import psrq.formats

ALLOWED = ("psrq.errors", "psrq.artifacts", "psrq.formats")


def test_formats_import_no_stage():
    for path in Path(psrq.formats.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name == "psrq" or name.startswith("psrq."):
                    assert name.startswith(ALLOWED), f"{path.name} imports {name}"
