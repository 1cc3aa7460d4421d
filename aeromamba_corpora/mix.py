"""The campaign's raw corpus: rendered MIDI music and produced recordings side by side.

Layout (the kind is the first folder below the split; data preparation reads it as a group)::

    OUT/{train,valid,test}/piano/*.wav      solo keyboard renders (arrangement piano or organ)
    OUT/{train,valid,test}/ensemble/*.wav   every other render (strings, ensemble, band)
    OUT/{train,valid,test}/produced/*.wav   decoded recordings (aeromamba_corpora.recordings)
    OUT/music_sources.json  OUT/recordings.json  OUT/SOURCES.md
    OUT/music_sources.NAME.json                 each further rendered corpus's (folder NAME)

Files are hard links to the corpora (copies where linking fails, e.g. across file systems),
so the layout costs no space. More than one rendered corpus may be mixed in (e.g. a solo-piano
one: scripts/build_music_corpus.py --arrangement piano). Splits are the corpora's own: the
renders are split by piece and collection, the recordings by package or album.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeromamba.errors import CorpusError
from aeromamba.files import atomic_path

SPLITS = ("train", "valid", "test")
KINDS = ("piano", "ensemble", "produced")
SOLO_KEYBOARD = ("piano", "organ")
MUSIC_SOURCES = "sources.json"
RECORDINGS = "recordings.json"
Table = dict[str, dict[str, tuple[int, float]]]


class MixError(CorpusError):
    """A corpus that cannot be laid out; the message names the file and the problem."""


@dataclass(frozen=True)
class Entry:
    """One file of the layout: `source` is linked as OUT/split/kind/source.name."""

    source: Path
    split: str
    kind: str
    seconds: float

    @property
    def dest(self) -> str:
        return f"{self.split}/{self.kind}/{self.source.name}"


def kind_of(arrangement: str) -> str:
    """'piano' for a solo keyboard arrangement, else 'ensemble'."""
    return "piano" if arrangement in SOLO_KEYBOARD else "ensemble"


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MixError(f"{path}: cannot read ({err})") from err


def _entry(root: Path, file: str, split: str, kind: str, seconds: float, index: Path) -> Entry:
    if split not in SPLITS:
        raise MixError(f"{index}: {file}: unknown split {split!r}")
    source = root / file
    if not source.is_file():
        raise MixError(f"{index}: lists {file}, which is missing")
    return Entry(source, split, kind, float(seconds))


def music_entries(root: Path) -> list[Entry]:
    """The rendered files listed in ROOT/sources.json, kind from their arrangement."""
    index = root / MUSIC_SOURCES
    try:
        records = _load(index)["files"]
        return [
            _entry(root, r["file"], r["split"], kind_of(r["arrangement"]), r["seconds"], index)
            for r in records
        ]
    except (KeyError, TypeError) as err:
        raise MixError(f"{index}: not a build_music_corpus.py sources file ({err!r})") from err


def recording_entries(root: Path) -> list[Entry]:
    """The used files listed in ROOT/recordings.json, kind 'produced'."""
    index = root / RECORDINGS
    try:
        records = [r for r in _load(index)["files"] if r["status"] == "used"]
        return [
            _entry(root, r["output"], r["split"], "produced", r["duration_s"], index)
            for r in records
        ]
    except (KeyError, TypeError) as err:
        raise MixError(f"{index}: not a recordings.json ({err!r})") from err


def place(source: Path, dest: Path) -> None:
    """Make `dest` a hard link to `source` (a copy where linking fails), atomically."""
    if dest.exists() and dest.samefile(source):
        return
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def mix_corpora(music: Path | Sequence[Path], recordings: Path, out: Path) -> Table:
    """Lay out OUT from the rendered corpora `music` and the recordings (see the module
    docstring); remove WAVs of OUT that are no longer listed. Returns
    {split: {kind: (files, minutes)}}."""
    musics = [Path(music)] if isinstance(music, (str, Path)) else [Path(m) for m in music]
    copies = [(m / MUSIC_SOURCES, f"music_{MUSIC_SOURCES}") for m in musics[:1]]
    copies += [(m / MUSIC_SOURCES, f"music_sources.{m.name}.json") for m in musics[1:]]
    copies.append((Path(recordings) / RECORDINGS, RECORDINGS))
    if len({m.name for m in musics}) < len(musics):
        names = ", ".join(map(str, musics))
        raise MixError(f"rendered corpora need distinct folder names: {names}")
    entries = [e for m in musics for e in music_entries(m)] + recording_entries(Path(recordings))
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.dest in seen:
            raise MixError(f"{entry.source} and {seen[entry.dest]} would both be {entry.dest}")
        seen[entry.dest] = entry.source
    out = Path(out)
    for entry in entries:
        place(entry.source, out / entry.dest)
    for split in SPLITS:
        for wav in sorted(out.glob(f"{split}/*/*.wav")):
            if wav.relative_to(out).as_posix() not in seen:
                wav.unlink()
    for source, name in copies:
        with atomic_path(out / name) as tmp:
            shutil.copyfile(source, tmp)
    result = tally(entries)
    with atomic_path(out / "SOURCES.md") as tmp:
        tmp.write_text(sources_markdown(result, musics, Path(recordings)))
    return result


def tally(entries: list[Entry]) -> Table:
    """{split: {kind: (files, minutes)}} of `entries`, zeros included."""
    table = {split: dict.fromkeys(KINDS, (0, 0.0)) for split in SPLITS}
    for entry in entries:
        files, minutes = table[entry.split][entry.kind]
        table[entry.split][entry.kind] = (files + 1, minutes + entry.seconds / 60)
    return table


def sources_markdown(table: Table, musics: list[Path], recordings: Path) -> str:
    """The combined SOURCES.md: the layout's table, then each corpus's own SOURCES.md."""
    rendered = ", ".join(f"`{m}`" for m in musics)
    lines = [
        "# Campaign corpus: sources",
        "",
        "Hard links to two corpora; the kind is the folder below each split.",
        "",
        f"- piano, ensemble: music21 scores rendered with FluidSynth, from {rendered}"
        " (every file in the music_sources*.json files)",
        f"- produced: recordings from Debian game-music packages, from `{recordings}`"
        f" (every file, used or not, in {RECORDINGS})",
        "",
        "| split | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for split in SPLITS:
        cells = [f"{table[split][k][0]} files, {table[split][k][1]:.1f} min" for k in KINDS]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    for root in (*musics, recordings):
        own = root / "SOURCES.md"
        if own.is_file():
            # one level down: its headings become sections of this file
            lines += ["", "---", "", re.sub(r"^#", "##", own.read_text(), flags=re.M).rstrip()]
    return "\n".join(lines) + "\n"
