#!/usr/bin/env python3
"""Prepare a music corpus for training and evaluation: 44.1 kHz mono / 11.025 kHz pairs.

SRC is a MUSDB18-HQ root (train/<song>/mixture.wav, test/<song>/mixture.wav; detected
automatically, valid = --musdb-valid-songs training songs drawn with --seed) or any folder of
audio files (split by its train/ valid/ test/ subfolders if present, else by a seeded draw).
DEST receives {split}/hr/*.wav, {split}/lr/*.wav and the manifests {split}.json; see
aeromamba/data/prepare.py. DEST must lie outside SRC. A file's split is fixed by a hash of its
path and --seed, so adding files never moves others. Rerunning skips files already done and
removes outputs no manifest lists. Exits with status 1 if nothing could be prepared or the
settings are wrong; skipped files and warnings (low sample rate, band limit, empty split) are
listed at the end.

Usage::

    python scripts/prepare_data.py data/musdb18hq data/musdb18hq_prepared --workers 4
    python scripts/prepare_data.py my_wavs data/my_wavs_prepared --valid-ratio 0.1 --test-ratio 0.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aeromamba.data.prepare import prepare_corpus
from aeromamba.errors import UsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="MUSDB18-HQ root or folder of audio files")
    parser.add_argument("dest", type=Path, help="prepared corpus folder")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--valid-ratio", type=float, default=0.1, help="folder without splits")
    parser.add_argument("--test-ratio", type=float, default=0.1, help="folder without splits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split draws")
    parser.add_argument(
        "--musdb-valid-songs", type=int, default=5, help="MUSDB training songs moved to valid"
    )
    parser.add_argument("--min-seconds", type=float, default=1.0, help="shorter files are skipped")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        report = prepare_corpus(
            args.src,
            args.dest,
            workers=args.workers,
            valid_ratio=args.valid_ratio,
            test_ratio=args.test_ratio,
            seed=args.seed,
            valid_songs=args.musdb_valid_songs,
            min_seconds=args.min_seconds,
        )
    except (OSError, UsageError) as err:  # a missing SRC, bad settings, DEST not writable
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; files already prepared are kept, a rerun goes on", file=sys.stderr)
        return 130
    print(report.summary())
    if not report.prepared:
        print(f"error: nothing could be prepared from {args.src}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
