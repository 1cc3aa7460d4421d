#!/usr/bin/env python3
"""Generate a seeded corpus of synthetic music and prepare it for training.

Writes 44.1 kHz 16-bit mono WAVs of `aeromamba.data.synthetic.music_clip` (10-40 s clips, one
50-s test clip, about 80/10/10 % of the clips in train/valid/test) to OUT/{train,valid,test}/
and the plan to OUT/synthetic.json, then prepares them into OUT_prepared (a sibling folder,
--prepared to choose another, --no-prepare to skip). The same --minutes and --seed give the
same files; reruns only write what is missing.

`conf/dset/synthetic.yaml` uses source data/synthetic and root data/synthetic_prepared, so

    python scripts/make_synthetic_corpus.py data/synthetic --minutes 10

makes what `python train.py dset=synthetic` reads (which also generates it when both are
missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aeromamba.data.prepare import prepare_corpus
from aeromamba.data.synthetic import write_synthetic_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder of the raw clips (train/ valid/ test/)")
    parser.add_argument("--minutes", type=float, default=10.0, help="total length (at least)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--prepared", type=Path, help="prepared folder (default: OUT_prepared)")
    parser.add_argument("--no-prepare", action="store_true", help="only write the raw clips")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or (args.workers is not None and args.workers < 1):
        parser.error("--minutes must be positive and --workers at least 1")
    plan = write_synthetic_corpus(args.out, args.minutes, seed=args.seed, workers=args.workers)
    seconds = sum(clip["seconds"] for clip in plan)
    print(f"{len(plan)} clips ({seconds / 60:.1f} min) in {args.out}")
    if args.no_prepare:
        return 0
    prepared = args.prepared or args.out.with_name(f"{args.out.name}_prepared")
    report = prepare_corpus(args.out, prepared, workers=args.workers)
    print(report.summary())
    return 0 if report.prepared else 1


if __name__ == "__main__":
    sys.exit(main())
