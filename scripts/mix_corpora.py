#!/usr/bin/env python3
"""Lay out the campaign's raw corpus: OUT/{train,valid,test}/{piano,ensemble,produced}/*.wav.

Hard links (copies where linking fails) to the rendered MIDI corpora (solo piano or organ
renders -> piano, every other arrangement -> ensemble) and to the produced recordings, plus
OUT/music_sources.json, OUT/recordings.json and a combined OUT/SOURCES.md.

Usage::

    python scripts/mix_corpora.py data/campaign_raw \\
        --music data/music_raw --recordings data/recordings_raw
    python scripts/mix_corpora.py data/campaign_raw --music data/music_raw \
        --music data/piano_raw --recordings data/recordings_raw     # with a solo-piano corpus
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aeromamba_corpora.mix import KINDS, SPLITS, MixError, mix_corpora


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="layout folder to write")
    parser.add_argument(
        "--music",
        type=Path,
        action="append",
        help="a rendered corpus (build_music_corpus.py); repeat to mix several"
        " (default: data/music_raw)",
    )
    parser.add_argument("--recordings", type=Path, default=Path("data/recordings_raw"))
    args = parser.parse_args(argv)
    try:
        table = mix_corpora(args.music or [Path("data/music_raw")], args.recordings, args.out)
    except MixError as err:
        print(err, file=sys.stderr)
        return 2
    print(f"{'split':6}" + "".join(f"{kind:>22}" for kind in KINDS))
    for split in SPLITS:
        cells = "".join(f"{f'{n} files {m:.1f} min':>22}" for n, m in table[split].values())
        print(f"{split:6}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
