"""The rendered corpus's catalogue (``catalogues/rendered.yaml``) and the pieces it selects.

The catalogue is data: collections of the music21 corpus with their category, split and
composer, exclusions, licences, the kinds of music with their arrangement chances, and the
General MIDI sounds (names, held-out programs and kits, pools per role). This module reads and
checks it, lists the pieces of the music21 corpus it selects, and orders each split's pieces
for a seed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import random
import re
from collections import deque
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from aeromamba.errors import CatalogueError

SPLITS = ("train", "valid", "test")
HASH_SPLIT = "hash"
KINDS = ("piano", "organ", "strings", "ensemble", "band")  # what arrange.py knows how to play
ROLES = ("piano", "organ", "high", "mid", "low", "bass", "comp", "lead")  # pools it draws from
CATALOGUE = files("aeromamba_corpora") / "catalogues" / "rendered.yaml"
SCORE_SUFFIXES = {".mxl": 0, ".xml": 1, ".musicxml": 1, ".krn": 2, ".abc": 3}  # preferred first


@dataclass(frozen=True)
class Collection:
    """A folder of the music21 corpus: its category, split (a split name or 'hash'), the
    composer to name when a score names none, and which file names count (glob)."""

    name: str
    category: str
    split: str
    composer: str = ""
    files: str = "*"


@dataclass(frozen=True)
class PathRule:
    """Scores whose corpus path starts with `prefix` get this category and/or split."""

    prefix: str
    category: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class Category:
    """A kind of music: share of a split's minutes, tempo range for unmarked scores (beats a
    minute), arrangements as (kind, cumulative chance) in draw order, drum chance per kind."""

    weight: float
    bpm: tuple[float, float]
    arrangements: tuple[tuple[str, float], ...]
    drum_chance: dict[str, float]

    def arrangement(self, r: float) -> str:
        """The arrangement a uniform draw `r` in [0, 1) picks."""
        return next(
            (kind for kind, upto in self.arrangements if r < upto), self.arrangements[-1][0]
        )


@dataclass(frozen=True)
class Sounds:
    """General MIDI programs and drum kits by number with their names; the held-out ones
    (valid and test only); the pool of programs per role, in draw order."""

    programs: dict[int, str]
    kits: dict[int, str]
    heldout_programs: frozenset[int]
    heldout_kits: frozenset[int]
    pools: dict[str, tuple[int, ...]]

    def name(self, program: int, drum: bool) -> str:
        return f"{self.kits.get(program, '?')} kit" if drum else self.programs.get(program, "?")

    def is_heldout(self, program: int, drum: bool) -> bool:
        return program in (self.heldout_kits if drum else self.heldout_programs)


@dataclass(frozen=True)
class Catalogue:
    """The whole catalogue; `paths` are the path rules, first match wins; `soundfonts` the
    SoundFont locations to try, in order."""

    collections: dict[str, Collection]
    paths: tuple[PathRule, ...]
    excluded: dict[str, str]
    excluded_rights: str  # regex, any case
    categories: dict[str, Category]
    split_shares: dict[str, float]
    sounds: Sounds
    licence: str
    soundfont_licence: str
    soundfonts: tuple[str, ...]

    def composer(self, collection: str) -> str:
        return self.collections[collection].composer or collection

    def heldout_collections(self) -> dict[str, str]:
        """Collections and path prefixes that only appear in valid or test: {name: split},
        by split (valid, test), then name."""
        held = {c.name: c.split for c in self.collections.values() if c.split in SPLITS[1:]}
        held |= {r.prefix: r.split for r in self.paths if r.split in SPLITS[1:]}
        return dict(sorted(held.items(), key=lambda item: (SPLITS.index(item[1]), item[0])))

    def arranged_as(self, kind: str) -> Catalogue:
        """This catalogue with every piece arranged as `kind` (e.g. a solo-piano corpus)."""
        if kind not in KINDS:
            raise CatalogueError(f"unknown arrangement {kind!r}; choose from {', '.join(KINDS)}")
        categories = {
            name: replace(c, arrangements=((kind, 1.0),)) for name, c in self.categories.items()
        }
        return replace(self, categories=categories)


def _cumulative(shares: dict[str, float]) -> tuple[tuple[str, float], ...]:
    # Rounded so that 0.33 + 0.10 is the float 0.43: draws compare with the bounds as written.
    total, out = 0.0, []
    for key, share in shares.items():
        total = round(total + float(share), 9)
        out.append((key, total))
    return tuple(out)


def _parse(data: dict[str, Any]) -> Catalogue:
    categories = {
        name: Category(
            weight=float(c["weight"]),
            bpm=(float(c["bpm"][0]), float(c["bpm"][1])),
            arrangements=_cumulative(c["arrangements"]),
            drum_chance={
                k: float(v) for k, v in (data["drum_chance"] | c.get("drum_chance", {})).items()
            },
        )
        for name, c in data["categories"].items()
    }
    heldout = data["heldout"]
    return Catalogue(
        collections={
            name: Collection(
                name, c["category"], c["split"], c.get("composer", ""), c.get("files", "*")
            )
            for name, c in data["collections"].items()
        },
        paths=tuple(
            PathRule(r["prefix"], r.get("category"), r.get("split")) for r in data["paths"]
        ),
        excluded={str(k): str(v) for k, v in data["excluded"].items()},
        excluded_rights=str(data["excluded_rights"]),
        categories=categories,
        split_shares={s: float(data["split_shares"][s]) for s in SPLITS},
        sounds=Sounds(
            programs={int(k): str(v) for k, v in data["programs"].items()},
            kits={int(k): str(v) for k, v in data["drum_kits"].items()},
            heldout_programs=frozenset(int(p) for p in heldout["programs"]),
            heldout_kits=frozenset(int(k) for k in heldout["drum_kits"]),
            pools={role: tuple(int(p) for p in data["pools"][role]) for role in ROLES},
        ),
        licence=str(data["licence"]),
        soundfont_licence=str(data["soundfont"]["licence"]),
        soundfonts=tuple(str(p) for p in data["soundfont"]["paths"]),
    )


def _problems(cat: Catalogue) -> list[str]:
    """What makes a parsed catalogue inconsistent (empty when it is usable)."""
    problems = []
    for c in cat.collections.values():
        if c.category not in cat.categories:
            problems.append(f"collection {c.name}: unknown category {c.category!r}")
        if c.split not in (*SPLITS, HASH_SPLIT):
            problems.append(f"collection {c.name}: unknown split {c.split!r}")
        if c.name in cat.excluded:
            problems.append(f"collection {c.name} is both used and excluded")
    for r in cat.paths:
        if r.prefix.split("/")[0] not in cat.collections:
            problems.append(f"path {r.prefix}: not in a listed collection")
        if r.category is not None and r.category not in cat.categories:
            problems.append(f"path {r.prefix}: unknown category {r.category!r}")
        if r.split is not None and r.split not in SPLITS:
            problems.append(f"path {r.prefix}: unknown split {r.split!r}")
    for name, c in cat.categories.items():
        kinds = {kind for kind, _ in c.arrangements} | set(c.drum_chance)
        if kinds - set(KINDS):
            problems.append(f"category {name}: unknown arrangements {sorted(kinds - set(KINDS))}")
        if set(KINDS) - set(c.drum_chance):
            problems.append(
                f"category {name}: no drum chance for {sorted(set(KINDS) - set(c.drum_chance))}"
            )
        if abs(c.arrangements[-1][1] - 1.0) > 1e-9:
            problems.append(f"category {name}: arrangement chances sum to {c.arrangements[-1][1]}")
    if abs(sum(cat.split_shares.values()) - 1.0) > 1e-9:
        problems.append(f"split_shares sum to {sum(cat.split_shares.values())}")
    s = cat.sounds
    used = {p for pool in s.pools.values() for p in pool} | s.heldout_programs
    unnamed = used - set(s.programs)
    if unnamed:
        problems.append(f"programs without a name: {sorted(unnamed)}")
    if s.heldout_kits - set(s.kits):
        problems.append(
            f"held-out drum kits without a name: {sorted(s.heldout_kits - set(s.kits))}"
        )
    for role, pool in s.pools.items():
        if not set(pool) - s.heldout_programs:
            problems.append(f"pool {role}: only held-out programs, nothing for training")
    return problems


def load_catalogue(path: str | os.PathLike | None = None) -> Catalogue:
    """Read and check a catalogue (YAML); the shipped one when `path` is None."""
    name = str(path or CATALOGUE)
    try:
        text = Path(path).read_text() if path else CATALOGUE.read_text()
        catalogue = _parse(yaml.safe_load(text))
        re.compile(catalogue.excluded_rights)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, IndexError, re.error) as err:
        raise CatalogueError(f"{name}: not a usable catalogue ({err!r})") from err
    problems = _problems(catalogue)
    if problems:
        raise CatalogueError(
            f"{name}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    return catalogue


# --- pieces ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One score of the music21 corpus: `path` is corpus-relative, `number` picks an ABC tune."""

    path: str
    number: int | None
    collection: str
    category: str
    split: str

    @property
    def id(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def stem(self) -> str:
        slug = re.sub(
            r"[^A-Za-z0-9]+", "-", self.id.rsplit(".", 1)[0] if self.number is None else self.id
        ).strip("-")
        return f"{self.category}_{slug}"[:120]


def stable_int(*parts: object) -> int:
    """A 64-bit integer from a hash of `parts`, the same in every process and Python version."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def rng_for(*parts: object) -> random.Random:
    return random.Random(stable_int(*parts))


def split_of(cat: Catalogue, path: str, collection: str, piece_id: str) -> str:
    """A piece's split: a path rule's, else its collection's (by hash for 'hash')."""
    rule = next((r for r in cat.paths if r.split and path.startswith(r.prefix)), None)
    split = rule.split if rule else cat.collections[collection].split
    if split != HASH_SPLIT:
        return split
    # The split must not depend on --seed, or pieces would move between splits.
    u = stable_int("split", piece_id) / 2**64
    return next((s for s, upto in _cumulative(cat.split_shares) if u < upto), SPLITS[-1])


def category_of(cat: Catalogue, path: str, collection: str) -> str:
    rule = next((r for r in cat.paths if r.category and path.startswith(r.prefix)), None)
    return rule.category if rule else cat.collections[collection].category


def corpus_root() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).resolve().parent


def score_files(folder: Path, pattern: str) -> list[Path]:
    """Score files under `folder` whose names match `pattern`, one per movement (a movement
    shipped both as MusicXML and Humdrum is taken once, in the order of SCORE_SUFFIXES)."""
    best: dict[str, Path] = {}
    for file in sorted(folder.rglob("*")):
        if file.suffix not in SCORE_SUFFIXES or not file.is_file():
            continue
        if not fnmatch.fnmatchcase(file.name, pattern):
            continue
        key = str(file.with_suffix(""))
        if key not in best or SCORE_SUFFIXES[file.suffix] < SCORE_SUFFIXES[best[key].suffix]:
            best[key] = file
    return sorted(best.values())


def list_pieces(cat: Catalogue, root: Path | None = None) -> list[Piece]:
    """Every piece of the catalogue's collections under the music21 corpus `root`, in a fixed
    order (collection name, path, tune number), with its category and split."""
    root = root or corpus_root()
    pieces: list[Piece] = []
    for name in sorted(cat.collections):
        for file in score_files(root / name, cat.collections[name].files):
            rel = file.relative_to(root).as_posix()
            numbers: list[int | None] = [None]
            if file.suffix == ".abc":  # an ABC book: one piece per tune
                found = re.findall(r"^X:\s*(\d+)", file.read_text("utf-8", "replace"), re.M)
                numbers = [int(n) for n in found] if len(found) > 1 else [None]
            for number in numbers:
                piece_id = rel if number is None else f"{rel}#{number}"
                split = split_of(cat, rel, name, piece_id)
                pieces.append(Piece(rel, number, name, category_of(cat, rel, name), split))
    return pieces


def ordered_for_split(cat: Catalogue, pieces: list[Piece], split: str, seed: int) -> list[Piece]:
    """The split's pieces interleaved by category weights, in an order fixed by the seed."""
    rng = rng_for("order", seed, split)
    queues: dict[str, deque[Piece]] = {}
    for category in sorted(cat.categories):
        chosen = [p for p in pieces if p.split == split and p.category == category]
        rng.shuffle(chosen)
        if chosen:
            queues[category] = deque(chosen)
    order: list[Piece] = []
    # Weighted round robin on expected time: the category furthest behind its share goes next.
    used = dict.fromkeys(queues, 0.0)
    while queues:
        category = min(queues, key=lambda c: (used[c] / cat.categories[c].weight, c))
        order.append(queues[category].popleft())
        used[category] += 1.0
        if not queues[category]:
            del queues[category]
    return order
