"""Two scorings of the same excerpts, paired: is a candidate model better on each kind of music?

    python scripts/compare_scores.py BEFORE/per_item.csv AFTER/per_item.csv
        [--system "model, predict"] [--metrics visqol lsd lsd_hf level_5_8 ...] [--alpha 0.05]

BEFORE and AFTER are the `per_item.csv` of two `test.py` (or `evaluate.py`) runs over the same
excerpts, e.g. the bundled model and a candidate checkpoint. For each group (kind of music) and
metric, the table gives both means, the mean paired change, the two-sided Wilcoxon signed-rank
p-value over the excerpts both runs scored, and the verdict at `--alpha`: `better`, `worse` or
`same` (no significant change). Better is higher for ViSQOL, lower for LSD and PAQM, a smaller
|level error| for `level_*` and a spread ratio nearer 1 (smaller |log ratio|) for `spread_*`.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from aeromamba.cli import entry_point
from aeromamba.errors import UsageError

METRICS = ("visqol", "lsd", "lsd_hf", "level_5_8", "level_8_12", "level_12_16", "spread_8_12")


def cost(metric: str, values: np.ndarray) -> np.ndarray:
    """Lower is better: each metric turned so that a smaller value is the better one."""
    if metric == "visqol":
        return -values
    if metric.startswith("level_"):
        return np.abs(values)
    if metric.startswith("spread_"):
        return np.abs(np.log(np.clip(values, 1e-6, None)))
    return values


def read_scores(path: Path, system: str) -> dict[str, dict[str, str]]:
    """item → its row of `system` in the per-item CSV at `path`."""
    try:
        with path.open(newline="") as file:
            rows = {r["item"]: r for r in csv.DictReader(file) if r.get("system") == system}
    except (OSError, KeyError, csv.Error) as err:
        raise UsageError(f"{path}: not a per-item score table ({err})") from err
    if not rows:
        raise UsageError(f"{path}: no row of system {system!r}")
    return rows


def _value(row: dict[str, str], metric: str) -> float:
    text = row.get(metric) or ""
    try:
        return float(text)
    except ValueError:
        return math.nan


def compare(
    before: dict[str, dict[str, str]],
    after: dict[str, dict[str, str]],
    metrics: Sequence[str],
    alpha: float = 0.05,
) -> list[dict[str, object]]:
    """One entry per group and metric: group, metric, n, before, after, change, p, verdict."""
    shared = [item for item in before if item in after]
    if not shared:
        raise UsageError("the two tables share no excerpt")
    groups = sorted({before[item]["group"] for item in shared})
    entries = []
    for group in groups:
        items = [item for item in shared if before[item]["group"] == group]
        for metric in metrics:
            x = np.array([_value(before[item], metric) for item in items])
            y = np.array([_value(after[item], metric) for item in items])
            keep = np.isfinite(x) & np.isfinite(y)
            x, y = x[keep], y[keep]
            gain = cost(metric, x) - cost(metric, y)  # > 0: after is better
            p = math.nan
            if len(gain) >= 6 and np.any(gain != 0):
                p = float(stats.wilcoxon(gain).pvalue)
            verdict = "same"
            if p < alpha:
                verdict = "better" if np.median(gain) > 0 else "worse"
            entries.append(
                {
                    "group": group,
                    "metric": metric,
                    "n": len(x),
                    "before": float(x.mean()) if len(x) else math.nan,
                    "after": float(y.mean()) if len(y) else math.nan,
                    "change": float((y - x).mean()) if len(x) else math.nan,
                    "p": p,
                    "verdict": verdict,
                }
            )
    return entries


def markdown(entries: Sequence[dict[str, object]]) -> str:
    """The entries as a Markdown table."""
    lines = [
        "| group | metric | n | before | after | change | p (Wilcoxon) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        lines.append(
            f"| {e['group']} | {e['metric']} | {e['n']} | {e['before']:.3f} | {e['after']:.3f} "
            f"| {e['change']:+.3f} | {e['p']:.2g} | {e['verdict']} |"
        )
    return "\n".join(lines)


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--system", default="model, predict")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS))
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    before, after = (read_scores(p, args.system) for p in (args.before, args.after))
    print(markdown(compare(before, after, args.metrics, args.alpha)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
