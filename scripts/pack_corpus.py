#!/usr/bin/env python3
"""Pack a sample of a corpus small enough to copy to a GPU machine (scripts/gpu_campaign.sh).

SRC is laid out as SRC/{train,valid}/{kind}/*.wav (the campaign's raw corpus); test/ is never
packed, the scores being measured where the corpus is, over the whole test split.
DEST receives DEST/{split}/{kind}/<name>.flac, mono (channels averaged) 16-bit FLAC at the
source's rate, and DEST/pack.json naming each file's source and excerpt.

Each split gets its share of --mib (valid: --valid-share), and within a split each kind keeps
its share of the split's source minutes: the kind furthest below its share takes the next
piece, one excerpt of at most --excerpt-seconds per source file (from a random start, so that
many pieces are represented), files in a seeded random order. The piece that would overflow
the budget is cut to fit, then the split is full. FLAC bytes plus pack.json stay under --mib.
A piece whose peak exceeds full scale (float sources) is scaled down rather than clipped.
Unreadable, non-finite and too short files are skipped and listed at the end.

DEST must be new, empty or an earlier pack (it holds that pack's pack.json). Rerunning into an
earlier pack replaces its files and removes those of its files (as its pack.json lists them)
that the new pack does not write; every other file there (a start.pt, the user's own) is kept.
pack.json is written before the FLAC files too, listing them as pending, so an interrupted
pack is still recognised as one.

Usage::

    python scripts/pack_corpus.py data/campaign_raw data/gpu_pack --mib 30 --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from aeromamba.audio import list_audio_files
from aeromamba.data import prepare
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path

SPLITS = ("train", "valid")
MIN_SECONDS = 4.0  # a piece shorter than a validation segment is not worth its bytes
ENTRY_BYTES = 1024  # pack.json bytes reserved per packed file (an entry takes about 300)
HEADER_BYTES = 4096  # and for its settings
MIB = 2**20


class Source(NamedTuple):
    """One audio file of a split: `relative` is its path below the split folder."""

    path: Path
    relative: Path
    frames: int
    rate: int
    channels: int

    @property
    def kind(self) -> str:
        """The first folder below the split ("" for a file directly in it)."""
        return self.relative.parts[0] if len(self.relative.parts) > 1 else ""

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


class Piece(NamedTuple):
    """A packed excerpt: `data` is its FLAC file."""

    source: Source
    start: int  # frames into the source
    frames: int
    gain: float
    data: bytes


def scan(split_dir: Path, min_seconds: float) -> tuple[list[Source], list[tuple[Path, str]]]:
    """The usable audio files below `split_dir` and the skipped ones (path, reason)."""
    sources, skipped, names = [], [], {}
    for path in list_audio_files(split_dir):
        relative = path.relative_to(split_dir)
        output = relative.with_suffix(".flac")
        try:
            info = sf.info(str(path))
        except Exception as err:  # soundfile raises several types for non-audio input
            skipped.append((path, f"not a readable audio file ({err})"))
            continue
        if info.frames < min_seconds * info.samplerate:
            reason = f"too short ({info.frames / info.samplerate:.2f} s, at least {min_seconds} s)"
            skipped.append((path, reason))
        elif output in names:
            skipped.append((path, f"same output name {output} as {names[output]}"))
        else:
            names[output] = path
            sources.append(Source(path, relative, info.frames, info.samplerate, info.channels))
    return sources, skipped


def encode(audio: np.ndarray, rate: int) -> tuple[bytes, float]:
    """Mono float audio (samples,) as a 16-bit FLAC file, and the gain applied (<= 1) so that
    its peak fits full scale."""
    peak = float(np.abs(audio).max(initial=0.0))
    gain = min(1.0, 32767 / 32768 / peak) if peak > 0 else 1.0
    pcm = np.round(audio * (gain * 32768)).clip(-32768, 32767).astype(np.int16)
    buffer = io.BytesIO()
    # the strongest compression: about 4% smaller, and every byte carried counts
    sf.write(buffer, pcm, rate, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return buffer.getvalue(), gain


def read_piece(source: Source, start: int, frames: int) -> Piece:
    """The excerpt [start, start + frames) of `source`, mono and encoded; ValueError naming the
    file for unreadable or non-finite audio."""
    try:
        data, _ = sf.read(
            str(source.path), start=start, frames=frames, dtype="float32", always_2d=True
        )
    except Exception as err:  # soundfile raises several types for a damaged file
        raise ValueError(f"not readable at {start / source.rate:.1f} s ({err})") from err
    if data.shape[0] < frames:
        raise ValueError(
            f"ends after {(start + data.shape[0]) / source.rate:.1f} s, not as its header says"
        )
    if not np.isfinite(data).all():
        raise ValueError(f"{int((~np.isfinite(data)).sum())} NaN/Inf samples")
    flac, gain = encode(data.mean(axis=1), source.rate)
    return Piece(source, start, frames, gain, flac)


def fit(piece: Piece, room: int, min_seconds: float) -> Piece | None:
    """`piece` cut from its end to at most `room` bytes, or None when less than `min_seconds`
    would remain."""
    frames = piece.frames
    while len(piece.data) > room:
        frames = int(frames * min(0.95, room / len(piece.data)))
        if frames < min_seconds * piece.source.rate:
            return None
        piece = read_piece(piece.source, piece.start, frames)
    return piece


def rng_for(seed: int, split: str, kind: str) -> np.random.Generator:
    """A generator of its own per split and kind: adding a kind never changes another's draw."""
    return np.random.default_rng([seed, zlib.crc32(f"{split}/{kind}".encode())])


def pack_split(
    sources: list[Source],
    split: str,
    budget: int,
    excerpt_seconds: float,
    min_seconds: float,
    seed: int,
) -> tuple[list[Piece], list[tuple[Path, str]]]:
    """Excerpts of `sources` whose FLAC bytes (plus ENTRY_BYTES each) stay within `budget`,
    each kind keeping its share of the sources' seconds; also the files that failed."""
    if not sources:
        return [], []
    kinds = sorted({s.kind for s in sources})
    total = sum(s.seconds for s in sources)
    share = {k: sum(s.seconds for s in sources if s.kind == k) / total for k in kinds}
    rngs = {k: rng_for(seed, split, k) for k in kinds}
    queues = {}
    for kind in kinds:
        own = [s for s in sources if s.kind == kind]
        queues[kind] = deque(own[i] for i in rngs[kind].permutation(len(own)))
    packed: list[Piece] = []
    failed: list[tuple[Path, str]] = []
    seconds = dict.fromkeys(kinds, 0.0)
    used = 0
    while queues:
        kind = min(queues, key=lambda k: (seconds[k] / share[k], k))
        source = queues[kind].popleft()
        if not queues[kind]:
            del queues[kind]
        frames = min(source.frames, round(excerpt_seconds * source.rate))
        start = int(rngs[kind].integers(0, source.frames - frames + 1))
        try:
            piece = read_piece(source, start, frames)
            room = budget - used - ENTRY_BYTES
            full = len(piece.data) > room
            piece = fit(piece, room, min_seconds) if full else piece
        except ValueError as err:
            failed.append((source.path, str(err)))
            continue
        if piece is None:
            break
        packed.append(piece)
        used += len(piece.data) + ENTRY_BYTES
        seconds[kind] += piece.frames / source.rate
        if full:
            break
    return packed, failed


def entry(piece: Piece, split: str, src: Path) -> dict:
    """The pack.json record of a packed file."""
    source = piece.source
    return {
        "file": (Path(split) / source.relative.with_suffix(".flac")).as_posix(),
        "source": source.path.relative_to(src).as_posix(),
        "kind": source.kind,
        "start_seconds": round(piece.start / source.rate, 6),
        "seconds": round(piece.frames / source.rate, 6),
        "rate": source.rate,
        "source_channels": source.channels,
        "gain": round(piece.gain, 6),
    }


def packed_path(dest: Path, name: object) -> Path:
    """DEST's file of pack.json's `name`: a relative path below a split folder ending .flac;
    ValueError for any other."""
    relative = Path(name) if isinstance(name, str) else None
    if (
        relative is None
        or relative.is_absolute()
        or ".." in relative.parts
        or len(relative.parts) < 2
        or relative.parts[0] not in SPLITS
        or relative.suffix != ".flac"
    ):
        raise ValueError(f"it lists {name!r}, not a FLAC file of a split folder")
    return dest / relative


def previous_pack(dest: Path) -> set[Path]:
    """The files an earlier pack wrote into `dest` (none for a new or empty folder); UsageError
    for a folder that is not empty and holds no pack.json of this script."""
    if not dest.exists() or not any(dest.iterdir()):
        return set()
    manifest = dest / "pack.json"
    if not manifest.is_file():
        raise UsageError(
            f"{dest}: not empty and no pack.json of an earlier pack in it; files in it could "
            f"be overwritten, choose a new or empty folder"
        )
    try:
        content = json.loads(manifest.read_text())
        names = [record["file"] for record in content["files"]] + content.get("pending", [])
        return {packed_path(dest, name) for name in names}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(
            f"{manifest}: not a pack.json of this script ({err}); choose a new or empty folder"
        ) from err


def write_pack_json(dest: Path, settings: dict, records: list[dict], pending: set[Path]) -> None:
    """DEST/pack.json: the settings, the packed files and the files that may be half-way."""
    content: dict = {"settings": settings, "files": records}
    if pending:
        content["pending"] = sorted(path.relative_to(dest).as_posix() for path in pending)
    with atomic_path(dest / "pack.json") as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n")


def remove_stale(stale: set[Path]) -> list[Path]:
    """Delete the files of an earlier pack that this pack did not write."""
    removed = sorted(path for path in stale if path.is_file() and not path.is_symlink())
    for path in removed:
        path.unlink()
    return removed


def table(pieces: dict[str, list[Piece]], sources: dict[str, list[Source]]) -> list[str]:
    """Report lines: files, minutes (of the source's minutes) and MiB per split and kind."""
    lines = [
        f"{'split':6} {'kind':10} {'files':>5} {'minutes':>8} {'of':>8} {'share':>6} {'MiB':>6}"
    ]
    for split, packed in pieces.items():
        split_minutes = sum(p.frames / p.source.rate for p in packed) / 60
        for kind in sorted({s.kind for s in sources[split]}):
            own = [p for p in packed if p.source.kind == kind]
            minutes = sum(p.frames / p.source.rate for p in own) / 60
            of = sum(s.seconds for s in sources[split] if s.kind == kind) / 60
            share = minutes / split_minutes if split_minutes else 0.0
            mib = sum(len(p.data) for p in own) / MIB
            lines.append(
                f"{split:6} {kind or '-':10} {len(own):5d} {minutes:8.2f} {of:8.1f} "
                f"{share:6.1%} {mib:6.2f}"
            )
    return lines


def check_locations(src: Path, dest: Path) -> str | None:
    """Why SRC and DEST cannot be used, if they cannot."""
    if not src.is_dir():
        return f"{src}: no such folder"
    if not any((src / split).is_dir() for split in SPLITS):
        return f"{src}: no {' or '.join(f'{s}/' for s in SPLITS)} folder"
    blocker = next((p for p in (dest, *dest.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker}: a file, not a folder; DEST {dest} cannot be made"
    try:
        prepare.check_locations(src, dest)
    except UsageError as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="corpus laid out as SRC/{train,valid}/{kind}/")
    parser.add_argument("dest", type=Path, help="packed corpus folder")
    parser.add_argument("--mib", type=float, required=True, help="size limit of the pack (MiB)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the file order and excerpts")
    parser.add_argument("--valid-share", type=float, default=0.1, help="valid's share of --mib")
    parser.add_argument(
        "--excerpt-seconds", type=float, default=20.0, help="longest excerpt of one file"
    )
    args = parser.parse_args(argv)
    if args.mib <= 0:
        parser.error("--mib must be positive")
    if not 0 <= args.valid_share < 1:
        parser.error("--valid-share must be in [0, 1)")
    if args.excerpt_seconds < MIN_SECONDS:
        parser.error(f"--excerpt-seconds must be at least {MIN_SECONDS}")
    problem = check_locations(args.src, args.dest)
    try:
        earlier = set() if problem else previous_pack(args.dest)
    except UsageError as err:
        problem = str(err)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    began = time.time()
    audio_budget = int(args.mib * MIB) - HEADER_BYTES
    budgets = {
        "train": audio_budget * (1 - args.valid_share),
        "valid": audio_budget * args.valid_share,
    }
    pieces: dict[str, list[Piece]] = {}
    sources: dict[str, list[Source]] = {}
    skipped: list[tuple[Path, str]] = []
    for split in SPLITS:
        if not (args.src / split).is_dir():
            print(f"warning: {args.src / split}: no such folder; nothing packed for {split}")
            continue
        sources[split], bad = scan(args.src / split, MIN_SECONDS)
        skipped += bad
        pieces[split], failed = pack_split(
            sources[split], split, int(budgets[split]), args.excerpt_seconds, MIN_SECONDS, args.seed
        )
        skipped += failed
    settings = {
        "src": str(args.src),
        "mib": args.mib,
        "seed": args.seed,
        "valid_share": args.valid_share,
        "excerpt_seconds": args.excerpt_seconds,
    }
    packed = [
        (piece, entry(piece, split, args.src)) for split, ps in pieces.items() for piece in ps
    ]
    records = [record for _, record in packed]
    written = {args.dest / record["file"] for record in records}
    write_pack_json(args.dest, settings, [], earlier | written)
    for piece, record in packed:
        with atomic_path(args.dest / record["file"]) as tmp:
            tmp.write_bytes(piece.data)
    stale = remove_stale(earlier - written)
    write_pack_json(args.dest, settings, records, set())
    size = sum(path.stat().st_size for path in written) + (args.dest / "pack.json").stat().st_size
    minutes = sum(p.frames / p.source.rate for ps in pieces.values() for p in ps) / 60
    print(
        f"packed {len(records)} files, {minutes:.1f} minutes, {size / MIB:.2f} MiB into "
        f"{args.dest} (limit {args.mib:g} MiB, seed {args.seed}) in {time.time() - began:.0f} s"
    )
    print("\n".join(table(pieces, sources)))
    if stale:
        print(f"removed {len(stale)} FLAC file(s) of an earlier pack")
    everything = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    if everything > size:
        print(f"{args.dest} holds {everything / MIB:.2f} MiB in all, with its other files")
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        print("\n".join(f"  {path}: {reason}" for path, reason in skipped))
    if not records:
        print(f"error: nothing could be packed from {args.src}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
