"""Score estimate folders against a reference folder (files paired by relative path).

    python scripts/evaluate.py --reference REF --estimate NAME=DIR [--estimate NAME=DIR ...]
        [--lowres DIR] [--metrics lsd,lsd_hf,lsd_lf,visqol,paqm] --out OUT [--report]

Writes OUT/summary.json (system → metric → mean, ci95, n, failed), OUT/per_item.csv,
OUT/summary.md and, with --report, OUT/report.html. Whatever the metrics, the generated band's
level error (dB) and envelope spread ratio per band (level_5_8 ... spread_16_20) get their own
table and, in the report, a bar plot. `--lowres` adds the baseline row: the
low-resolution files upsampled to 44.1 kHz with soxr (VHQ). Every system needs its own name.
A bad option or folder ends with one line `error: ...` (status 2) before anything is scored;
status 1 when any item or metric failed (the failures are listed in summary.md and printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aeromamba.cli import entry_point, metrics_option
from aeromamba.errors import UsageError
from aeromamba.evaluation import LOWRES, METRICS, evaluate_folders


def parse_estimate(text: str) -> tuple[str, str]:
    """NAME=DIR, or DIR (named after the folder)."""
    name, sep, folder = text.partition("=")
    return (name, folder) if sep else (Path(text).name, text)


def systems_option(estimates: list[str], lowres: str | None) -> dict[str, str]:
    """name → folder of every system (the baseline under `LOWRES`); UsageError for a name
    given twice or a folder that is not there."""
    named = [("--lowres", LOWRES, lowres)] if lowres else []
    named += [("--estimate", *parse_estimate(text)) for text in estimates]
    systems: dict[str, str] = {}
    for flag, name, folder in named:
        if name in systems:
            taken = " (the --lowres row's name)" if name == LOWRES else ""
            raise UsageError(
                f"--estimate: the name {name!r}{taken} is given twice ({systems[name]} and "
                f"{folder}); give each system its own: --estimate NAME=DIR"
            )
        if not Path(folder).is_dir():
            raise UsageError(f"{flag} {folder}: no such folder")
        systems[name] = folder
    return systems


def check_out(out: str, reference: str, systems: dict[str, str]) -> None:
    """UsageError when `out` is (inside) the reference or a system's folder: the next run
    would score the report's own audio."""
    where = Path(out).resolve()
    scored = [("--reference", reference)]
    scored += [
        ("--lowres" if name == LOWRES else "--estimate", folder) for name, folder in systems.items()
    ]
    for flag, folder in scored:
        if where == Path(folder).resolve() or Path(folder).resolve() in where.parents:
            raise UsageError(
                f"--out {out}: inside {flag} {folder}, whose files are scored; "
                "write the results outside it"
            )


@entry_point
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
    if not args.estimate and not args.lowres:
        parser.error("give at least one --estimate or --lowres")
    metrics = metrics_option(args.metrics)
    systems = systems_option(args.estimate, args.lowres)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: not a folder")
    if not Path(args.reference).exists():
        raise UsageError(f"--reference {args.reference}: no such file or folder")
    check_out(args.out, args.reference, systems)
    lowres = systems.pop(LOWRES, None)
    evaluation = evaluate_folders(
        args.reference,
        systems,
        args.out,
        lowres=lowres,
        metrics=metrics,
        report=args.report,
        report_items=args.report_items,
    )
    print((Path(args.out) / "summary.md").read_text())
    if evaluation.failures:
        print(f"{len(evaluation.failures)} failures (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    main()
