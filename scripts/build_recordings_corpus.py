#!/usr/bin/env python3
"""Build the corpus of produced music from the Debian packages of the recordings catalogue.

Fetches each package with `apt-get download` (nothing is installed; run `apt-get update` once
first), extracts it with `dpkg-deb -x`, decodes the music (Ogg Vorbis/Opus, FLAC, WAV, MP3),
measures each file's bandwidth and writes::

    OUT/{train,valid,test}/produced/<package>__<path inside the package, '/' -> '__'>.wav
    OUT/recordings.json   one record per audio file: licence, split, duration, rate, bandwidth,
                          used or skipped and why
    OUT/SOURCES.md        packages, versions, licences, minutes

Which packages, which folders hold music and which split each package or album goes to are in
aeromamba_corpora/catalogues/recordings.yaml (or --catalogue). Reruns reuse what is done.

Usage::

    apt-get update
    python scripts/build_recordings_corpus.py data/recordings_raw
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from aeromamba_corpora.recordings import CatalogueError, build_corpus, load_catalogue, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="corpus folder to write")
    parser.add_argument(
        "--cache", type=Path, help="where .debs and extracted packages go (default OUT/.cache)"
    )
    parser.add_argument("--catalogue", type=Path, help="catalogue YAML (default: the shipped one)")
    args = parser.parse_args(argv)
    try:
        catalogue = load_catalogue(args.catalogue)
    except CatalogueError as err:
        print(err, file=sys.stderr)
        return 2
    packages = build_corpus(
        args.out,
        args.cache or args.out / ".cache",
        catalogue,
        progress=lambda jobs: tqdm(jobs, desc="audio files", unit="file"),
        log=lambda line: tqdm.write(line, file=sys.stderr),
    )
    for row in summary(packages):
        low, median, high = row["bandwidth_hz"]
        print(
            f"{row['package']:24} {row['split']:5} {row['files']:3} files {row['minutes']:6.1f} min"
            f"  rates {row['sample_rates']}  bandwidth {low}/{median}/{high} Hz (min/median/max)"
        )
    failed = [p.name for p in packages if p.error]
    print(f"wrote {args.out / 'recordings.json'}" + (f"; not fetched: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
