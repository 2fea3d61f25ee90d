"""Run pipeline stages once: skip a stage whose inputs and settings have not changed.

Each stage has a fingerprint (its settings plus the fingerprints of the stages it reads). When
it finishes, a small marker `<output>/.stages/<name>.json` records that fingerprint; a rerun
with the same fingerprint and all outputs present is skipped. An interrupted stage wrote no
marker, so the next run redoes it (and long stages, like training, resume from their own
checkpoints).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from psrq.artifacts import fingerprint_obj, write_json

console = Console(stderr=True)


@dataclass
class Stage:
    """One step of the pipeline.

    `settings` is everything that changes the stage's result (config slice, upstream
    fingerprints); `outputs` are the paths that must exist for the stage to count as done.
    """

    name: str
    settings: dict[str, Any]
    outputs: list[Path]
    action: Callable[[], Any]
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = fingerprint_obj({"stage": self.name, **self.settings})


@dataclass
class StageResult:
    name: str
    fingerprint: str
    skipped: bool
    seconds: float


class StageRunner:
    """Runs stages in order under one output directory, printing progress for each."""

    def __init__(self, root: Path, *, force: bool = False) -> None:
        self.root = Path(root)
        self.force = force
        self.results: list[StageResult] = []

    def _marker(self, name: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
        return self.root / ".stages" / f"{slug}.json"

    def is_done(self, stage: Stage) -> bool:
        marker = self._marker(stage.name)
        if self.force or not marker.is_file():
            return False
        try:
            recorded = json.loads(marker.read_text()).get("fingerprint")
        except json.JSONDecodeError:
            return False
        return recorded == stage.fingerprint and all(p.exists() for p in stage.outputs)

    def run(self, stage: Stage) -> StageResult:
        n = len(self.results) + 1
        if self.is_done(stage):
            console.print(
                f"[bold]{n}. {stage.name}[/bold] [green]up to date[/green] (inputs unchanged)"
            )
            result = StageResult(stage.name, stage.fingerprint, True, 0.0)
        else:
            console.rule(f"[bold]{n}. {stage.name}")
            t0 = time.perf_counter()
            stage.action()
            seconds = time.perf_counter() - t0
            missing = [str(p) for p in stage.outputs if not p.exists()]
            if missing:
                raise RuntimeError(f"stage {stage.name} finished without writing {missing}")
            write_json(
                self._marker(stage.name),
                {
                    "stage": stage.name,
                    "fingerprint": stage.fingerprint,
                    "seconds": round(seconds, 2),
                },
            )
            console.print(f"[green]✓[/green] {stage.name} done in {seconds:.1f} s")
            result = StageResult(stage.name, stage.fingerprint, False, seconds)
        self.results.append(result)
        return result
