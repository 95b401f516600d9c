"""One bench against two glint checkouts: this tree (A) and another (B, typically a `git worktree`
of an older commit), in alternating rounds on the same stack and the same machine, so both see it
equally busy. Each tree's rounds, the medians of its figures, and the ratios of the two.

`glint bench notifications --compare OLD_TREE` and `python -m bench.chat --compare OLD_TREE` use it;
the other tree's code runs in child processes of the same Python (the same venv) with that tree
first on sys.path (tree_env, and the tree as working directory).
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Iterator

from bench import report

ROOT = Path(__file__).resolve().parents[1]


def targets(compare: str | None, rounds: int | None) -> tuple[list[tuple[str, Path]], int]:
    """(label, tree) of this tree and of `compare` if given; rounds per tree (default 1, or 3 with two)."""
    trees = [("A", ROOT)] + ([("B", Path(compare).resolve())] if compare else [])
    return trees, rounds or (3 if compare else 1)


def alternate(trees: list[tuple[str, Path]], rounds: int) -> Iterator[tuple[int, str, Path]]:
    """(round index, label, tree) for every round of every tree; who goes first alternates."""
    for n in range(rounds):
        for label, tree in trees if n % 2 == 0 else trees[::-1]:
            yield n, label, tree


def tree_env(tree: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment (os.environ, or `base`) in which python imports glint from `tree`."""
    return {**(os.environ if base is None else base), "PYTHONPATH": str(tree)}


def lookup(row: dict[str, Any], key: str) -> Any:
    """row["a"]["b"] for the key "a.b"; None where it is missing."""
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.median(numbers) if numbers else None


def summarize(trees: list[tuple[str, Path]], runs: dict[str, list[dict]], keys: tuple[str, ...]) -> dict[str, Any]:
    """`targets` (each tree's label, folder, commit, rounds and the medians of `keys`, dotted for
    nested figures) and, with two trees, `comparison`: b_over_a and a_over_b (new over old when A is
    this tree and B the older one)."""
    out: dict[str, Any] = {"targets": []}
    for label, tree in trees:
        rows = runs[label]
        out["targets"].append({"label": label, "tree": str(tree), "git": report.git_commit(tree), "rounds": rows,
                               "median": {k: _median([lookup(r, k) for r in rows]) for k in keys}})
    if len(trees) == 2:
        a, b = (t["median"] for t in out["targets"])
        shared = [k for k in keys if a[k] is not None and b[k] is not None]
        out["comparison"] = {"a": trees[0][0], "b": trees[1][0],
                             "b_over_a": {k: b[k] / a[k] for k in shared if a[k]},
                             "a_over_b": {k: a[k] / b[k] for k in shared if b[k]}}
    return out
