#!/usr/bin/env python3
"""Build a reproducible training corpus of real, varied music from package registries alone.

Scores of the music21 corpus are arranged by seed (solo piano or organ, string quartet, mixed
ensembles, folk bands with derived chords and bass, in a share of them a drum kit following
the metre) and rendered with FluidSynth and the FluidR3_GM SoundFont at 44.1 kHz; see
aeromamba_corpora.rendered. The collections, licences, splits, held-out sounds and instrument
pools are in aeromamba_corpora/catalogues/rendered.yaml (or --catalogue).

Layout::

    OUT/train/*.wav  OUT/valid/*.wav  OUT/test/*.wav   44.1 kHz, 16-bit, stereo as rendered
    OUT/sources.json  OUT/SOURCES.md                  one entry per file, plus failures
    OUT/.meta/                                        per-file records (for idempotent reruns)

The same seed gives the same files whatever --workers is; reruns reuse what is there.
--synthetic-minutes M adds M minutes of aeromamba.data.synthetic clips (seeded by --seed) as
OUT/{split}/synth_*.wav. --example DIR writes a 15 s excerpt of Liliuokalani's "Aloha 'Oe"
(test split) as DIR/example_44k.wav, DIR/example_11k.wav (soxr VHQ) and DIR/README.md.

Requirements (the script stops with this advice when one is missing)::

    apt-get update && apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm
    pip install "music21>=9"          # or: pip install -e ".[corpus]"

Usage::

    python scripts/build_music_corpus.py data/music_raw --minutes 75 --seed 0 --workers 2
    python scripts/build_music_corpus.py data/music_raw --example examples
    python scripts/build_music_corpus.py data/piano_raw --minutes 60 --seed 1 \
        --arrangement piano --synthetic-minutes 0        # a solo-piano corpus
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from aeromamba_corpora.rendered import (
    BuildOptions,
    CatalogueError,
    SetupError,
    build_corpus,
    build_example,
    check_requirements,
    load_catalogue,
)
from aeromamba_corpora.rendered.catalogue import KINDS as ARRANGEMENTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (train/, valid/, test/ inside)")
    parser.add_argument("--minutes", type=float, default=60.0, help="total target minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--max-seconds-per-piece", type=float, default=60.0)
    parser.add_argument(
        "--synthetic-minutes",
        type=float,
        default=5.0,
        help="minutes of aeromamba.data.synthetic clips (0: none)",
    )
    parser.add_argument(
        "--example", type=Path, metavar="DIR", help="also write the example clip to DIR"
    )
    parser.add_argument(
        "--example-only", action="store_true", help="write only the --example clip, no corpus"
    )
    parser.add_argument("--catalogue", type=Path, help="catalogue YAML (default: the shipped one)")
    parser.add_argument(
        "--arrangement",
        choices=ARRANGEMENTS,
        help="arrange every piece this way (e.g. piano: a solo-piano corpus); default: the"
        " catalogue's chances per kind of music",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.max_seconds_per_piece < 5 or args.workers < 1:
        parser.error("--minutes must be > 0, --max-seconds-per-piece >= 5, --workers >= 1")
    if args.example_only and args.example is None:
        parser.error("--example-only needs --example DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        catalogue = load_catalogue(args.catalogue)
        if args.arrangement:
            catalogue = catalogue.arranged_as(args.arrangement)
        sf2 = check_requirements(catalogue.soundfonts)
    except (CatalogueError, SetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.example is not None:
        build_example(args.example, sf2, args.seed, catalogue)
        print(f"example written to {args.example}")
    if args.example_only:
        return 0
    options = BuildOptions(
        minutes=args.minutes,
        seed=args.seed,
        workers=args.workers,
        max_seconds_per_piece=args.max_seconds_per_piece,
        synthetic_minutes=args.synthetic_minutes,
    )
    started = time.time()
    with tqdm(
        total=round(args.minutes, 2),
        desc="rendering (minutes of audio)",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
    ) as bar:
        records, failed = build_corpus(
            args.out, options, catalogue, sf2, progress=bar.update, log=bar.write
        )
    minutes = {
        s: sum(r["seconds"] for r in records if r["split"] == s) / 60
        for s in ("train", "valid", "test")
    }
    print(
        f"built {len(records)} files in {time.time() - started:.0f} s: "
        + ", ".join(f"{s} {m:.1f} min" for s, m in minutes.items())
        + f"; {len(failed)} skipped (see {args.out / 'SOURCES.md'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
