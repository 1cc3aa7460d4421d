"""Building the rendered corpus: pieces in seeded order, rendered in worker processes until each
split holds its share of the minutes, with sources.json and SOURCES.md beside the splits; and
the fixed example clip."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import random
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from aeromamba.audio import resample, write_audio
from aeromamba.data.synthetic import write_synthetic_corpus
from aeromamba.files import atomic_path
from aeromamba_corpora.rendered.arrange import (
    Arrangement,
    DrumStyle,
    apply_arrangement,
    choose_arrangement,
    set_tempo,
)
from aeromamba_corpora.rendered.catalogue import (
    SPLITS,
    Catalogue,
    Piece,
    category_of,
    list_pieces,
    ordered_for_split,
    rng_for,
    split_of,
)
from aeromamba_corpora.rendered.render import SR, finish_audio, render
from aeromamba_corpora.rendered.score import (
    TPQ,
    Music,
    PieceError,
    music_end,
    parse_score,
    score_to_music,
    seconds_to_tick,
    tick_to_seconds,
    window,
    write_midi,
)

BUILDER = "scripts/build_music_corpus.py"
Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What a build makes: `minutes` in all (split by the catalogue's split shares), at most
    `max_seconds_per_piece` of each piece, `synthetic_minutes` of aeromamba.data.synthetic clips
    (0: none), rendered by `workers` processes; `seed` fixes every choice."""

    minutes: float = 60.0
    seed: int = 0
    workers: int = 1
    max_seconds_per_piece: float = 60.0
    synthetic_minutes: float = 5.0


# --- one piece ------------------------------------------------------------------------------


def _excerpt(
    music: Music, max_seconds: float, rng: random.Random, start_quarter: float | None
) -> float:
    """Cut a piece longer than `max_seconds` to an excerpt starting on a bar, in place;
    returns where it starts (s). Often the opening, else a bar further in, chosen by `rng`;
    `start_quarter`: the first bar from there instead."""
    total = tick_to_seconds(music_end(music), music.tempos)
    if total <= max_seconds * 1.1 or not music.bars:
        return 0.0
    starts = [b.start for b in music.bars if b.pad == 0 or b.start == 0]
    room = [t for t in starts if total - tick_to_seconds(t, music.tempos) >= max_seconds]
    if start_quarter is not None:
        start_tick = next((t for t in starts if t >= start_quarter * TPQ), starts[0])
    elif room and rng.random() > 0.35:
        start_tick = rng.choice(room)
    else:
        start_tick = music.bars[0].start
    start_s = tick_to_seconds(start_tick, music.tempos)
    window(music, start_tick, seconds_to_tick(start_s + max_seconds + 1.0, music.tempos))
    return start_s


def arrange_piece(
    piece: Piece,
    seed: int,
    max_seconds: float,
    catalogue: Catalogue,
    arr: Arrangement | None = None,
    start_quarter: float | None = None,
) -> tuple[Music, Arrangement, Record]:
    """Parse, window and arrange one piece; returns the music, its arrangement and a record.

    `arr` and `start_quarter` (the excerpt starts at the first bar from there) override the
    seeded choices.
    """
    rng = rng_for("piece", seed, piece.id)
    heldout = piece.split != "train"
    sounds = catalogue.sounds
    if arr is None:
        arr = choose_arrangement(catalogue.categories[piece.category], sounds, rng, heldout)
    try:
        score = parse_score(piece.path, piece.number)
    except PieceError:
        raise
    except Exception as err:  # music21 raises many types for files it cannot read
        raise PieceError(f"parse failed: {type(err).__name__}: {err}") from err
    try:
        music = score_to_music(score, want_key=arr.kind == "band")
    except PieceError:
        raise
    except Exception as err:
        raise PieceError(f"MIDI export failed: {type(err).__name__}: {err}") from err
    if re.search(catalogue.excluded_rights, music.rights, re.I):
        raise PieceError(f"excluded: embedded rights notice {music.rights!r}")
    set_tempo(music, arr)
    start_s = _excerpt(music, max_seconds, rng, start_quarter)
    apply_arrangement(music, arr, sounds, rng, heldout)
    record = {
        "piece": piece.id,
        "corpus_path": piece.path,
        "tune_number": piece.number,
        "collection": piece.collection,
        "category": piece.category,
        "split": piece.split,
        "title": music.title,
        "composer": music.composer or catalogue.composer(piece.collection),
        "rights_notice": music.rights,
        "licence": catalogue.licence,
        "arrangement": arr.kind,
        "programs": [
            {
                "part": t.name,
                "program": t.program,
                "name": sounds.name(t.program, t.drum),
                "heldout": sounds.is_heldout(t.program, t.drum),
            }
            for t in music.tracks
        ],
        "drums": arr.drums is not None,
        "drum_kit": sounds.kits[arr.drums.kit] if arr.drums else None,
        "bass_double": arr.bass_double,
        "transpose": arr.transpose,
        "tempo_qpm": round(6e7 / music.tempos[0][1], 1),
        "excerpt_start_s": round(start_s, 2),
        "peak_dbfs": round(arr.peak_db, 2),
        "seed": seed,
        "soundfont": catalogue.soundfont_licence,
    }
    return music, arr, record


def render_music(music: Music, arr: Arrangement, sf2: Path, max_seconds: float) -> np.ndarray:
    """MIDI -> FluidSynth -> trimmed, cut and normalised (channels, samples) at SR."""
    with tempfile.TemporaryDirectory(prefix="m21render_") as tmp:
        midi_path = Path(tmp) / "piece.mid"
        write_midi(midi_path, music)
        audio = render(midi_path, Path(tmp) / "render.wav", sf2, arr)
    return finish_audio(audio, max_seconds, arr.peak_db)


@dataclasses.dataclass(frozen=True)
class Job:
    piece: Piece
    seed: int
    out: str
    sf2: str
    max_seconds: float
    catalogue: Catalogue


def meta_path(out: Path, split: str, stem: str) -> Path:
    return out / ".meta" / split / f"{stem}.json"


def render_job(job: Job) -> Record:
    """Render one piece to its file (or reuse it); returns its record, with 'error' on failure."""
    piece, out = job.piece, Path(job.out)
    wav = out / piece.split / f"{piece.stem}_s{job.seed}.wav"
    meta = meta_path(out, piece.split, wav.stem)
    if wav.is_file() and meta.is_file():
        record = json.loads(meta.read_text())
        record["reused"] = True
        return record
    try:
        music, arr, record = arrange_piece(piece, job.seed, job.max_seconds, job.catalogue)
        audio = render_music(music, arr, Path(job.sf2), job.max_seconds)
        if audio.shape[1] < 2 * SR:
            raise PieceError(f"only {audio.shape[1] / SR:.1f} s of sound")
    except PieceError as err:
        return {"piece": piece.id, "split": piece.split, "error": str(err)}
    except Exception as err:  # report anything else too: a bad piece must not stop the build
        return {"piece": piece.id, "split": piece.split, "error": f"{type(err).__name__}: {err}"}
    record.update(
        file=f"{piece.split}/{wav.name}",
        seconds=round(audio.shape[1] / SR, 3),
        channels=int(audio.shape[0]),
        sample_rate=SR,
    )
    write_audio(wav, audio, SR, subtype="PCM_16", format="WAV")
    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    record["reused"] = False
    return record


# --- the corpus -----------------------------------------------------------------------------


def build_split(
    pool: cf.Executor,
    order: list[Piece],
    target_s: float,
    job_for: Callable[[Piece], Job],
    workers: int,
    progress: Callable[[float], None],
    log: Callable[[str], None],
) -> tuple[list[Record], list[Record]]:
    """Render pieces in order until `target_s` seconds are accepted; (accepted, failed).

    Results are accepted strictly in order, so the set does not depend on how many workers ran;
    files rendered past the target by workers running ahead are removed again. `progress`
    receives the minutes each accepted file adds towards the target.
    """
    accepted: list[Record] = []
    failed: list[Record] = []
    pending: deque[tuple[Job, cf.Future[Record]]] = deque()
    queue = iter(order)
    total = 0.0
    while total < target_s:
        while len(pending) < 2 * workers:
            piece = next(queue, None)
            if piece is None:
                break
            job = job_for(piece)
            pending.append((job, pool.submit(render_job, job)))
        if not pending:
            log(f"warning: ran out of pieces at {total / 60:.1f} min")
            break
        result = pending.popleft()[1].result()
        if "error" in result:
            failed.append(result)
            log(f"skipped {result['piece']}: {result['error']}")
            continue
        accepted.append(result)
        progress(max(0.0, min(result["seconds"], target_s - total)) / 60)
        total += result["seconds"]
    for _, future in pending:
        future.cancel()
    for job, future in pending:
        if future.cancelled():
            continue
        extra = future.result()
        if "error" not in extra and not extra.get("reused"):
            out = Path(job.out)
            (out / extra["file"]).unlink(missing_ok=True)
            meta_path(out, extra["split"], Path(extra["file"]).stem).unlink(missing_ok=True)
    return accepted, failed


def set_aside_earlier_files(out: Path, kept: set[str], log: Callable[[str], None]) -> None:
    """Move rendered files of an earlier build (other seed, target or code) out of the splits,
    where they would be read as training data, to OUT/.unused/ (a later rerun may want them)."""
    for split in SPLITS:
        for wav in sorted((out / split).glob("*.wav")):
            meta = meta_path(out, split, wav.stem)
            if f"{split}/{wav.name}" in kept or not meta.is_file():
                continue
            unused = out / ".unused" / split
            unused.mkdir(parents=True, exist_ok=True)
            os.replace(wav, unused / wav.name)
            os.replace(meta, unused / meta.name)
            log(f"moved {split}/{wav.name}, not part of this build, to {unused}")


def add_synthetic(out: Path, options: BuildOptions) -> list[Record]:
    """Write `options.synthetic_minutes` of aeromamba.data.synthetic clips to OUT/.synthetic/
    and copy them into the splits as synth_*.wav; their records."""
    if options.synthetic_minutes <= 0:
        return []
    target = out / ".synthetic"
    minutes, seed = options.synthetic_minutes, options.seed
    write_synthetic_corpus(target, minutes, seed=seed, workers=options.workers, progress=False)
    records = []
    for wav in sorted(target.rglob("*.wav")):
        parts = wav.relative_to(target).parts
        split = next((p for p in parts[:-1] if p in SPLITS), "train")
        name = "synth_" + "_".join(p for p in parts if p not in SPLITS)
        with atomic_path(out / split / name) as tmp:
            shutil.copyfile(wav, tmp)
        records.append(
            {
                "file": f"{split}/{name}",
                "split": split,
                "seconds": sf.info(str(wav)).duration,
                "source": "aeromamba.data.synthetic",
                "seed": options.seed,
                "licence": "generated by this project (MIT)",
            }
        )
    return records


def build_corpus(
    out: str | os.PathLike,
    options: BuildOptions,
    catalogue: Catalogue,
    sf2: Path,
    progress: Callable[[float], None] = lambda minutes: None,
    log: Callable[[str], None] = print,
) -> tuple[list[Record], list[Record]]:
    """Build the corpus into OUT/{train,valid,test}/ with OUT/sources.json and OUT/SOURCES.md;
    returns (records of the rendered files, records of the skipped pieces).

    Each split takes its pieces in the seed's order until it holds its share of the minutes;
    files already rendered by an earlier run with the same seed are reused.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pieces = list_pieces(catalogue)
    records: list[Record] = []
    failed: list[Record] = []

    def job(piece: Piece) -> Job:
        return Job(
            piece, options.seed, str(out), str(sf2), options.max_seconds_per_piece, catalogue
        )

    # spawn, not fork: forked workers would inherit (and print) the caller's progress bar
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(options.workers, context) as pool:
        for split in SPLITS:
            order = ordered_for_split(catalogue, pieces, split, options.seed)
            target = options.minutes * 60 * catalogue.split_shares[split]
            done, bad = build_split(pool, order, target, job, options.workers, progress, log)
            records += done
            failed += bad
    set_aside_earlier_files(out, {r["file"] for r in records}, log)
    synthetic = add_synthetic(out, options)
    write_sources(out, options, catalogue, records, failed, synthetic)
    return records, failed


def split_summary(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Per split: files, minutes, files with drums and with a held-out instrument."""
    summary = {}
    for split in SPLITS:
        mine = [r for r in records if r["split"] == split]
        summary[split] = {
            "files": len(mine),
            "minutes": round(sum(r["seconds"] for r in mine) / 60, 2),
            "with_drums": sum(r["drums"] for r in mine),
            "with_heldout_instrument": sum(any(p["heldout"] for p in r["programs"]) for r in mine),
        }
    return summary


def write_sources(
    out: Path,
    options: BuildOptions,
    catalogue: Catalogue,
    records: list[Record],
    failed: list[Record],
    synthetic: list[Record],
) -> None:
    """OUT/sources.json (everything) and OUT/SOURCES.md (a readable table)."""
    import music21

    sounds = catalogue.sounds
    data = {
        "builder": BUILDER,
        "seed": options.seed,
        "minutes": options.minutes,
        "max_seconds_per_piece": options.max_seconds_per_piece,
        "soundfont": catalogue.soundfont_licence,
        "corpus_licence": catalogue.licence,
        "music21_version": music21.__version__,
        "heldout_programs": {p: sounds.programs[p] for p in sorted(sounds.heldout_programs)},
        "heldout_kits": {k: sounds.kits[k] for k in sorted(sounds.heldout_kits)},
        "heldout_collections": catalogue.heldout_collections(),
        "excluded_collections": catalogue.excluded,
        "summary": split_summary(records),
        "files": sorted(records, key=lambda r: r["file"]),
        "synthetic": synthetic,
        "failed": failed,
    }
    with atomic_path(out / "sources.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    with atomic_path(out / "SOURCES.md") as tmp:
        tmp.write_text(sources_markdown(data, options, catalogue))


def _cell(value: object) -> str:
    return str(value).replace("|", "/").replace("\n", " ")


def sources_markdown(data: dict[str, Any], options: BuildOptions, catalogue: Catalogue) -> str:
    sounds = catalogue.sounds
    lines = [
        "# Sources of this corpus",
        "",
        f"Built by `{BUILDER}` with seed {options.seed}, target "
        f"{options.minutes} min, at most {options.max_seconds_per_piece} s per piece.",
        "",
        f"- Scores: the music21 {data['music21_version']} corpus; {catalogue.licence}.",
        f"- SoundFont: {catalogue.soundfont_licence}.",
        "- Held-out GM programs (valid/test only): "
        + ", ".join(f"{p} {sounds.programs[p]}" for p in sorted(sounds.heldout_programs))
        + "; drum kits: "
        + ", ".join(sounds.kits[k] for k in sorted(sounds.heldout_kits)),
        "- Held-out collections: "
        + ", ".join(f"{c} ({s})" for c, s in data["heldout_collections"].items()),
        "- Excluded: " + "; ".join(f"{c}: {why}" for c, why in catalogue.excluded.items()),
        "",
        "| split | files | minutes | with drums | with held-out instrument |",
        "| --- | --- | --- | --- | --- |",
    ]
    for split, s in data["summary"].items():
        lines.append(
            f"| {split} | {s['files']} | {s['minutes']} | {s['with_drums']} | "
            f"{s['with_heldout_instrument']} |"
        )
    lines += [
        "",
        "| file | s | score (corpus path) | composer | rights notice | arrangement | programs "
        "| drums | seed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["files"]:
        programs = ", ".join(f"{p['name']}" + ("*" if p["heldout"] else "") for p in r["programs"])
        lines.append(
            f"| {r['file']} | {r['seconds']:.1f} | {_cell(r['piece'])} | {_cell(r['composer'])} | "
            f"{_cell(r['rights_notice']) or '-'} | {r['arrangement']} | {_cell(programs)} | "
            f"{r['drum_kit'] or 'no'} | {r['seed']} |"
        )
    lines += ["", "`*` held-out instrument.", ""]
    if data["synthetic"]:
        lines += ["## Synthetic share", ""]
        lines += [f"- {s['file']}" for s in data["synthetic"]] + [""]
    lines += ["## Skipped pieces", ""]
    lines += [f"- {f['piece']} ({f['split']}): {f['error']}" for f in data["failed"]] or ["none"]
    return "\n".join(lines) + "\n"


# --- the example clip -----------------------------------------------------------------------

EXAMPLE_PATH = "liliuokalani/aloha_oe.mxl"
EXAMPLE_SECONDS = 15.0
# The example's fixed arrangement: a light kit under the chorus, a bass line, no transposition.
EXAMPLE_ARRANGEMENT = Arrangement(
    kind="ensemble",
    drums=DrumStyle(
        kit=0,
        ride=False,
        sixteenths=False,
        level=0.5,
        crash_every=8,
        fill_every=8,
        shaker=True,
        tambourine=False,
    ),
    bass_double=True,
    transpose=0,
    tempo_factor=1.0,
    base_bpm=84.0,
    peak_db=-3.0,
    reverb=(0.5, 0.3, 0.8, 0.5),
    chorus=False,
)
# Fixed instruments by part name, so the clip does not change when the catalogue's pools do.
EXAMPLE_PROGRAMS = {
    "soprano": 73,
    "alto": 48,
    "tenor": 48,
    "bass": 42,
    "solo voice": 40,
    "piano": 0,
}
EXAMPLE_BASS, EXAMPLE_OTHER = 32, 48


def example_piece(catalogue: Catalogue) -> Piece:
    collection = EXAMPLE_PATH.split("/")[0]
    return Piece(
        EXAMPLE_PATH,
        None,
        collection,
        category_of(catalogue, EXAMPLE_PATH, collection),
        split_of(catalogue, EXAMPLE_PATH, collection, EXAMPLE_PATH),
    )


def build_example(directory: str | os.PathLike, sf2: Path, seed: int, catalogue: Catalogue) -> None:
    """The fixed, held-out example clip: DIR/example_44k.wav (mono, 16-bit), the same clip
    resampled to 11.025 kHz (soxr VHQ) as DIR/example_11k.wav, and DIR/README.md."""
    directory = Path(directory)
    piece = example_piece(catalogue)
    # The refrain (bars 12-17), where the four-part chorus joins the piano.
    music, arr, record = arrange_piece(
        piece, seed, EXAMPLE_SECONDS + 2, catalogue, EXAMPLE_ARRANGEMENT, 44.0
    )
    for t in music.tracks:
        if not t.drum:
            bass = EXAMPLE_BASS if t.role == "bass" else EXAMPLE_OTHER
            t.program = EXAMPLE_PROGRAMS.get(t.name.lower(), bass)
    with tempfile.TemporaryDirectory(prefix="m21example_") as tmp:
        write_midi(Path(tmp) / "example.mid", music)
        audio = render(Path(tmp) / "example.mid", Path(tmp) / "example.wav", sf2, arr)
    audio = finish_audio(audio.mean(axis=0, keepdims=True), EXAMPLE_SECONDS, arr.peak_db)
    # Resample what the 16-bit file holds, so the pair matches the files exactly.
    audio = np.round(audio * 32767) / 32767
    write_audio(directory / "example_44k.wav", audio.astype(np.float32), SR, "PCM_16", "WAV")
    low = resample(audio.astype(np.float64), SR, 11025, quality="VHQ")
    write_audio(directory / "example_11k.wav", low, 11025, "PCM_16", "WAV")
    with atomic_path(directory / "README.md") as tmp:
        tmp.write_text(example_readme(music, record, piece, catalogue))


def example_readme(music: Music, record: Record, piece: Piece, catalogue: Catalogue) -> str:
    names: dict[str, list[str]] = {}
    for t in music.tracks:
        sound = f"{catalogue.sounds.kits[t.program]} drum kit" if t.drum else None
        names.setdefault(sound or catalogue.sounds.programs[t.program], []).append(t.name or "part")
    parts = "; ".join(f"{sound} ({', '.join(who)})" for sound, who in names.items())
    return f"""# Example clip

`example_44k.wav` is a {EXAMPLE_SECONDS:.0f} s excerpt (mono, 16-bit, 44.1 kHz) of *Aloha 'Oe*
by Queen Lili'uokalani (1878), rendered by `{BUILDER} --example` from the
music21 corpus score `{piece.path}` with FluidSynth and the FluidR3_GM SoundFont.
`example_11k.wav` is the same clip resampled to 11.025 kHz with soxr `VHQ`
(`soxr.resample(x, 44100, 11025, quality="VHQ")`): the input a super-resolution model gets.

- Arrangement: {parts}. The light drum part (hi-hats, shaker, kick, snare, crash)
  adds energy above 5.5 kHz, which the 11.025 kHz version lacks.
- Excerpt: from {record["excerpt_start_s"]:.1f} s into the piece at {record["tempo_qpm"]:.0f}
  quarter notes a minute, where the four-part chorus (here flute, strings and cello) joins.
- The piece belongs to the builder's {piece.split} split: it is never in the training data.

## Licence

- Composition: public domain (published 1884; the composer died in 1917).
- Encoding: music21 corpus file `{piece.path}`, whose rights notice reads
  "{record["rights_notice"]}".
- Sounds: {catalogue.soundfont_licence}.
- The rendered clips may be used freely (CC0).
"""
