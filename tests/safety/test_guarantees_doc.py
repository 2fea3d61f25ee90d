"""docs/guarantees.md names the tests that pin each guarantee: every one of them must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_guarantees_page_exists():
    doc = (REPO / "docs" / "guarantees.md").read_text()
    files = set(re.findall(r"`(tests/[\w/]+\.py)", doc))
    assert files, "the page names no test files"
    defined = {}
    for f in files:
        path = REPO / f
        assert path.is_file(), f"{f} named in docs/guarantees.md does not exist"
        defined[f] = set(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.M))
    names = set(re.findall(r"::(test_\w+)", doc))
    everywhere = set().union(*defined.values())
    missing = sorted(n for n in names if n not in everywhere)
    assert not missing, f"docs/guarantees.md names tests that do not exist: {missing}"
    for section in ("Atomicity", "Locks", "Integrity", "Determinism", "Resume"):
        assert f"## {section}" in doc
