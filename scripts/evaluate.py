"""Score estimate folders against a reference folder (files paired by relative path).

    python scripts/evaluate.py --reference REF --estimate NAME=DIR [--estimate NAME=DIR ...]
        [--lowres DIR] [--metrics lsd,lsd_hf,lsd_lf,visqol,paqm] --out OUT [--report]

Writes OUT/summary.json (system → metric → mean, ci95, n, failed), OUT/per_item.csv,
OUT/summary.md and, with --report, OUT/report.html. `--lowres` adds the baseline row: the
low-resolution files upsampled to 44.1 kHz with soxr (VHQ). Exits with status 1 when any
item or metric failed (the failures are listed in summary.md and printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aeromamba.evaluation import METRICS, evaluate_folders


def parse_estimate(text: str) -> tuple[str, str]:
    """NAME=DIR, or DIR (named after the folder)."""
    name, sep, folder = text.partition("=")
    return (name, folder) if sep else (Path(text).name, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="folder of 44.1 kHz references")
    parser.add_argument("--estimate", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--lowres", help="folder of low-resolution inputs (baseline row)")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", action="store_true", help="also write report.html")
    parser.add_argument("--report-items", type=int, default=20)
    args = parser.parse_args()
    estimates = dict(parse_estimate(e) for e in args.estimate)
    if not estimates and not args.lowres:
        parser.error("give at least one --estimate or --lowres")
    evaluation = evaluate_folders(
        args.reference,
        estimates,
        args.out,
        lowres=args.lowres,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        report=args.report,
        report_items=args.report_items,
    )
    print((Path(args.out) / "summary.md").read_text())
    if evaluation.failures:
        print(f"{len(evaluation.failures)} failures (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
