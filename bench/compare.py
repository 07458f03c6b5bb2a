"""Two sets of ``make bench`` results side by side: the median of each row over the runs of
each side, and after/before. For a change that must not move the figures (a refactor, a
server swap), run the same command on both sides back to back, alternating, on the same
machine, and compare:

    python -m bench.compare --before a1.json a2.json --after b1.json b2.json

A row is a scenario at its connections and load (saturated or paced), keyed the same in
every results file; the Redis script's rows (scenario 6) are keyed by script and note. Rows
that one side lacks are listed, not compared. The spread column is the larger side's
(max - min) / median: a ratio inside it is noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, ...]


@dataclass(frozen=True)
class Compared:
    key: Key
    metric: str
    before: float
    after: float
    spread: float

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else float("nan")


def figures(document: dict[str, Any]) -> dict[tuple[Key, str], float]:
    """One results document's comparable figures: req/s and p50/p99 of every HTTP and TCP run,
    runs a second of every Redis script row."""
    found: dict[tuple[Key, str], float] = {}
    for run in document.get("runs", []):
        key = (str(run["scenario"]), str(run["connections"]), str(run.get("load", "saturated")))
        found[key, "rps"] = float(run["rps"])
        latency = run.get("latency_ms") or {}
        for quantile in ("p50", "p99"):
            if quantile in latency:
                found[key, f"{quantile}_ms"] = float(latency[quantile])
    for row in document.get("redis_ceiling", []):
        found[("redis", str(row["script"]), str(row.get("note", ""))), "rps"] = float(row["rps"])
    return found


def _spread(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def compare(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> tuple[list[Compared], list[str]]:
    """The rows both sides have, as medians; and the rows only one side has."""
    sides: list[dict[tuple[Key, str], list[float]]] = []
    for documents in (before, after):
        collected: dict[tuple[Key, str], list[float]] = {}
        for document in documents:
            for name, value in figures(document).items():
                collected.setdefault(name, []).append(value)
        sides.append(collected)
    old, new = sides
    rows = [
        Compared(
            key=name[0],
            metric=name[1],
            before=statistics.median(old[name]),
            after=statistics.median(new[name]),
            spread=max(_spread(old[name]), _spread(new[name])),
        )
        for name in sorted(old.keys() & new.keys())
    ]
    alone = [f"{'/'.join(name[0])} {name[1]}: only {side}" for side, names in (
        ("before", old.keys() - new.keys()), ("after", new.keys() - old.keys())
    ) for name in sorted(names)]  # fmt: skip
    return rows, alone


def render(rows: list[Compared], alone: list[str], *, runs: tuple[int, int]) -> str:
    lines = [
        f"medians of {runs[0]} run(s) before and {runs[1]} after",
        f"{'row':<44} {'metric':<7} {'before':>11} {'after':>11} {'after/before':>12} {'spread':>7}",
    ]
    for row in rows:
        lines.append(
            f"{'/'.join(row.key):<44} {row.metric:<7} {row.before:>11,.2f} {row.after:>11,.2f} "
            f"{row.ratio:>11.2f}x {row.spread:>6.0%}"
        )
    lines.extend(alone)
    return "\n".join(lines)


def _load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    documents = []
    for path in paths:
        try:
            documents.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise SystemExit(f"{path}: not a results file ({error})") from None
    return documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, nargs="+", required=True, help="results JSON files")
    parser.add_argument("--after", type=Path, nargs="+", required=True, help="results JSON files")
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    args = parser.parse_args(argv)
    rows, alone = compare(_load(args.before), _load(args.after))
    if args.json:
        print(json.dumps({"rows": [row.__dict__ | {"ratio": round(row.ratio, 3)} for row in rows], "alone": alone}))
    else:
        print(render(rows, alone, runs=(len(args.before), len(args.after))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
