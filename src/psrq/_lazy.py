"""Lazy package exports (PEP 562), so `import psrq` and `psrq --help` stay free of torch/pyarrow."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], renames: Mapping[str, str] | None = None
) -> Callable[[str], Any]:
    """A module `__getattr__` importing `name` from module `exports[name]` on first use.

    `renames` maps an exported name to the attribute's name in its module, where they differ.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), (renames or {}).get(name, name))

    return __getattr__
