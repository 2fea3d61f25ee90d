"""Markdown tables for docs/results-*.md from one or more `psrq experiment` output dirs.

Usage: python scripts/results-tables.py [--records] OUT_DIR [OUT_DIR ...] -- ROW [ROW ...]
Reads OUT_DIR/results.json (write it with `psrq experiment ... --report-only` over every row of the
dir: each `psrq experiment` call rewrites it with its own rows only), merges the runs by name (the
first dir holding a row wins) and prints, for test then validation, one table of the
given rows (ROW = run name, or name=label): mean ± sample std over the finished seeds, and the number of seeds (n).
--records reads the per-seed records OUT_DIR/runs/<run>/seed<k>.json instead (while a grid is
still running; it does not check their cache keys against a spec, results.json does).
"""

import json
import math
import sys
from pathlib import Path

METRICS = [("auc", "All AUC"), ("cold_auc", "Cold AUC"), ("logloss", "Logloss"), ("gauc", "GAUC")]


def _cell(stat: dict) -> str:
    if not stat["n"] or math.isnan(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["n"] > 1 else " (one seed)")


def _from_records(out: Path) -> list[dict]:
    runs = []
    for run_dir in sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else []:
        seeds = {
            str(r["seed"]): r
            for r in (json.loads(p.read_text()) for p in sorted(run_dir.glob("seed*.json")))
        }
        if not seeds:
            continue
        summary = {}
        for split in ("valid", "test"):
            summary[split] = {}
            for k, _ in METRICS:
                vals = [
                    r["metrics"][split][k]
                    for r in seeds.values()
                    if not math.isnan(r["metrics"][split][k])
                ]
                mean = sum(vals) / len(vals) if vals else math.nan
                std = (
                    math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
                    if len(vals) > 1
                    else 0.0
                )
                summary[split][k] = {"mean": mean, "std": std, "n": len(vals)}
        runs.append({"name": next(iter(seeds.values()))["run"], "seeds": seeds, "summary": summary})
    return runs


def main(argv: list[str]) -> None:
    records = argv[:1] == ["--records"]
    dirs, rows = argv[int(records) : argv.index("--")], argv[argv.index("--") + 1 :]
    runs: dict[str, dict] = {}
    for d in dirs:
        for r in (
            _from_records(Path(d))
            if records
            else json.loads((Path(d) / "results.json").read_text())["runs"]
        ):
            runs.setdefault(r["name"], r)
    for split, title in (("test", "test"), ("valid", "validation")):
        print(f"{title}:\n")
        print("| method | n | " + " | ".join(m for _, m in METRICS) + " |")
        print("|---" * (len(METRICS) + 2) + "|")
        for row in rows:
            name, _, label = row.partition("=")
            label = label or name
            r = runs.get(name)
            if r is None:
                print(f"| {label} | 0 | " + " | ".join("no finished seed" for _ in METRICS) + " |")
                continue
            s = r["summary"][split]
            cells = [_cell(s[k]) for k, _ in METRICS]
            seeds = ",".join(sorted(r["seeds"]))
            n = s["auc"]["n"]
            print(
                f"| {label} | {n}{'' if n >= 5 else f' (seeds {seeds})'} | "
                + " | ".join(cells)
                + " |"
            )
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
