"""Lossy and low-rate versions of 44.1 kHz references: leaving the file alone against predict.

    python scripts/evaluate_lossy.py REFERENCES OUT [--excerpt 10] [--every 40]
        [--conditions mp3_64_mono,mp3_128_stereo,sr22050,sr11025] [--checkpoint PATH]

For every 44.1 kHz reference (a file or the audio files of a folder), each condition is what
a user holds instead of it: an MP3 of about 64 kb/s mono (soundfile's encoder, variable bit
rate, lowpass near 16 kHz), an MP3 of 128 kb/s stereo (constant bit rate, lowpass near
16.8 kHz), or the reference resampled to 22.05 kHz or 11.025 kHz (soxr). Each decoded
condition, whole, is then either left alone (soxr-upsampled to 44.1 kHz where needed) or
upsampled by predict's defaults (`aeromamba.upsample` with the model's `InferenceOptions`).
Both are scored against the reference with ViSQOL and LSD on mono mixes of `--excerpt`-second
excerpts every `--every` seconds (full excerpts only; a file shorter than one is one excerpt),
as the project's evaluation does (`aeromamba.evaluation`: mean ± 95% CI), together with the
generated band's level error. Writes OUT/lossy.md (the table) and OUT/lossy.json (summaries,
per-excerpt scores, each file's measured cutoff and bit rate).
"""

import argparse
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import stats

from aeromamba.audio import resample
from aeromamba.cli import entry_point
from aeromamba.data.bandwidth import measure_bandwidth
from aeromamba.errors import UsageError
from aeromamba.files import atomic_path

SR = 44100
METRICS = ("visqol", "lsd")
ALONE, PREDICT = "file alone", "predict default"


@dataclass(frozen=True)
class Condition:
    """One way a user holds the reference: an MP3 (`level` is soundfile's compression level,
    `mode` its bit-rate mode, `mono` mixed down first) or a lower rate (`rate`, no MP3)."""

    label: str
    rate: int = SR
    level: float | None = None
    mode: str | None = None
    mono: bool = False

    def make(self, reference: np.ndarray) -> tuple[np.ndarray, int, float]:
        """(decoded audio (samples, channels), its rate, bits per second of the encoding)
        from a (samples, channels) float reference at 44.1 kHz."""
        audio = reference.mean(1, keepdims=True) if self.mono else reference
        if self.level is None:
            low = resample(audio.T, SR, self.rate).T
            return low, self.rate, 32.0 * self.rate * audio.shape[1]
        buffer = io.BytesIO()
        sf.write(
            buffer, audio, SR, format="MP3", compression_level=self.level, bitrate_mode=self.mode
        )
        bits = 8.0 * buffer.tell() * SR / len(audio)
        buffer.seek(0)
        decoded, _ = sf.read(buffer, dtype="float32", always_2d=True)
        return _fit(decoded, len(audio)), SR, bits


# levels measured on the campaign's produced recordings: ~64 kb/s and a 16.1 kHz lowpass
# (mono, VBR 0.68), 128 kb/s and a 16.8 kHz lowpass (stereo, CBR 0.65; VBR reaches 128 kb/s
# only at levels whose lowpass is above 18 kHz)
CONDITIONS = {
    "mp3_64_mono": Condition("MP3 ~64 kb/s mono", level=0.68, mode="VARIABLE", mono=True),
    "mp3_128_stereo": Condition("MP3 128 kb/s stereo", level=0.65, mode="CONSTANT"),
    "sr22050": Condition("22.05 kHz", rate=22050),
    "sr11025": Condition("11.025 kHz", rate=11025),
}


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad (samples, channels) to `length` samples (decoders and resamplers
    round lengths; an MP3 decoder may add its padding)."""
    return np.pad(audio[:length], ((0, max(0, length - len(audio))), (0, 0)))


def excerpt_starts(length: int, excerpt: int, every: int) -> list[int]:
    """Start samples of the full excerpts of `excerpt` samples every `every` samples; one
    (the whole file) when it is shorter than an excerpt."""
    return list(range(0, max(length - excerpt, 0) + 1, every))


def reference_files(path: Path) -> list[Path]:
    """`path` itself, or the audio files soundfile reads in the folder `path`, sorted;
    UsageError when there are none or one is not at 44.1 kHz."""
    if not path.exists():
        raise UsageError(f"REFERENCES {path}: no such file or folder")
    candidates = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    files = []
    for candidate in candidates:
        try:
            rate = sf.info(candidate).samplerate
        except sf.LibsndfileError:
            continue  # not audio (a cover image, notes)
        if rate != SR:
            raise UsageError(f"REFERENCES {candidate}: {rate} Hz, references must be {SR} Hz")
        files.append(candidate)
    if not files:
        raise UsageError(f"REFERENCES {path}: no audio file")
    return files


Upsampler = Callable[[np.ndarray, int], np.ndarray]


def predict_default(checkpoint: str | Path | None) -> Upsampler:
    """(samples, channels) at any rate → 44.1 kHz, as predict.py writes it by default, with
    the model of `checkpoint` (None: the bundled one)."""
    import aeromamba
    from aeromamba.options import load_model

    model = load_model(checkpoint or aeromamba.PRETRAINED)
    return lambda audio, rate: aeromamba.upsample(audio, rate, model)[0]


def leave_alone(audio: np.ndarray, rate: int) -> np.ndarray:
    """The decoded file as it is, soxr-upsampled to 44.1 kHz where needed."""
    return resample(audio.T, rate, SR).T


def evaluate(
    files: Sequence[Path],
    conditions: Sequence[str],
    upsample: Upsampler,
    excerpt: float,
    every: float,
) -> dict[str, Any]:
    """Score leaving each condition alone and `upsample` on every file's excerpts:
    {"items": [...], "files": [...]} (see `summarize`)."""
    from tqdm import tqdm

    from aeromamba.evaluation import metric_functions, score_item

    functions = metric_functions(METRICS, SR)
    systems = {ALONE: leave_alone, PREDICT: upsample}
    items, measured = [], []
    jobs = [(path, name) for path in files for name in conditions]
    for path, name in tqdm(jobs, desc="files × conditions", unit="job"):
        reference, _ = sf.read(path, dtype="float32", always_2d=True)
        decoded, rate, bits = CONDITIONS[name].make(reference)
        cutoff = measure_bandwidth(decoded.T, rate)
        measured.append({"file": path.name, "condition": name, "bits": bits, "cutoff": cutoff})
        mono = reference.mean(1)
        outputs = {
            system: _fit(fn(decoded, rate), len(reference)).mean(1)
            for system, fn in systems.items()
        }
        size = min(round(excerpt * SR), len(mono))
        for start in tqdm(excerpt_starts(len(mono), size, round(every * SR)), leave=False):
            item = f"{path.name}@{start / SR:g}s"
            for system, output in outputs.items():
                window = slice(start, start + size)
                result = score_item(system, item, output[window], mono[window], functions)
                items.append({"condition": name, **asdict(result)})
    return {"items": items, "files": measured}


def _mean_ci(values: Sequence[float]) -> dict[str, float | int | None]:
    """mean and 95% CI half-width (Student t) of `values`."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {"mean": None, "ci95": None, "n": 0}
    ci = None
    if len(values) > 1:
        sem = values.std(ddof=1) / math.sqrt(len(values))
        ci = float(stats.t.ppf(0.975, len(values) - 1) * sem)
    return {"mean": float(values.mean()), "ci95": ci, "n": len(values)}


def summarize(results: dict[str, Any], conditions: Sequence[str]) -> dict[str, Any]:
    """condition → {system → key → mean/ci95/n, "visqol_gain": paired predict − alone,
    "lsd_ratio": predict's mean LSD / the file's, "bits", "cutoff": means over files,
    "failed": scores that failed}."""
    summary: dict[str, Any] = {}
    for name in conditions:
        rows = [r for r in results["items"] if r["condition"] == name]
        by_system = {s: {r["item"]: r for r in rows if r["system"] == s} for s in (ALONE, PREDICT)}
        keys = sorted({k for r in rows for k in r["scores"]}, key=lambda k: (k not in METRICS, k))
        entry: dict[str, Any] = {
            system: {
                k: _mean_ci([r["scores"][k] for r in got.values() if k in r["scores"]])
                for k in keys
            }
            for system, got in by_system.items()
        }
        paired = [
            by_system[PREDICT][i]["scores"]["visqol"] - by_system[ALONE][i]["scores"]["visqol"]
            for i in by_system[ALONE]
            if "visqol" in by_system[ALONE][i]["scores"]
            and "visqol" in by_system.get(PREDICT, {}).get(i, {}).get("scores", {})
        ]
        entry["visqol_gain"] = _mean_ci(paired)
        lsd = [entry[s].get("lsd", {}).get("mean") for s in (PREDICT, ALONE)]
        entry["lsd_ratio"] = lsd[0] / lsd[1] if None not in lsd and lsd[1] else None
        files = [f for f in results["files"] if f["condition"] == name]
        entry["bits"] = float(np.mean([f["bits"] for f in files]))
        entry["cutoff"] = float(np.mean([f["cutoff"] for f in files]))
        entry["failed"] = sum(len(r["errors"]) for r in rows)
        summary[name] = entry
    return summary


def _fmt(entry: dict[str, Any] | None, digits: int = 3) -> str:
    if not entry or entry["mean"] is None:
        return "—"
    ci = "" if entry["ci95"] is None else f" ± {entry['ci95']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}{ci}"


def markdown(summary: dict[str, Any], command: str) -> str:
    """The table: per condition, ViSQOL and LSD of the file left alone and of predict's
    default, the paired ViSQOL gain, the LSD ratio and the generated band's level errors."""
    head = [
        "condition",
        "kb/s",
        "cutoff (kHz)",
        f"ViSQOL {ALONE}",
        f"ViSQOL {PREDICT}",
        "ViSQOL gain",
        f"LSD {ALONE}",
        f"LSD {PREDICT}",
        "LSD ratio",
        "n",
        "failed",
    ]
    lines = [f"`{command}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in summary.items():
        alone, ours = entry[ALONE], entry[PREDICT]
        ratio = "—" if entry["lsd_ratio"] is None else f"{entry['lsd_ratio']:.2f}"
        cells = [
            CONDITIONS[name].label,
            f"{entry['bits'] / 1000:.0f}",
            f"{entry['cutoff'] / 1000:.1f}",
            _fmt(alone.get("visqol")),
            _fmt(ours.get("visqol")),
            _fmt(entry["visqol_gain"]),
            _fmt(alone.get("lsd")),
            _fmt(ours.get("lsd")),
            ratio,
            str(alone.get("lsd", {}).get("n", 0)),
            str(entry["failed"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    levels = sorted({k for e in summary.values() for k in e[PREDICT] if k.startswith("level_")})
    if levels:
        lines += ["", "Generated band's level error (dB, estimate − reference):", ""]
        lines.append("| condition | system | " + " | ".join(levels) + " |")
        lines.append("|" + "---|" * (len(levels) + 2))
        for name, entry in summary.items():
            for system in (ALONE, PREDICT):
                cells = [_fmt(entry[system].get(k), 1) for k in levels]
                lines.append(f"| {CONDITIONS[name].label} | {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, results: dict[str, Any], summary: dict[str, Any], command: str):
    """OUT/lossy.json (summary, items, files) and OUT/lossy.md, each written atomically."""
    document = {"command": command, "summary": summary, **results}
    with atomic_path(out / "lossy.json") as tmp:
        tmp.write_text(json.dumps(document, indent=1))
    with atomic_path(out / "lossy.md") as tmp:
        tmp.write_text(markdown(summary, command))


def conditions_option(text: str) -> list[str]:
    """Comma-separated condition names; UsageError naming the unknown ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise UsageError(
            f"--conditions {text}: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(CONDITIONS)}"
        )
    return names


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("references", type=Path, help="a 44.1 kHz file or folder of them")
    parser.add_argument("out", type=Path, help="folder for lossy.md and lossy.json")
    parser.add_argument("--excerpt", type=float, default=10.0, help="seconds per excerpt")
    parser.add_argument("--every", type=float, default=40.0, help="seconds between excerpts")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--checkpoint", help="a generator's checkpoint (default: the bundled)")
    args = parser.parse_args(argv)
    if args.excerpt <= 0 or args.every <= 0:
        raise UsageError("--excerpt and --every must be positive seconds")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"OUT {args.out}: not a folder")
    conditions = conditions_option(args.conditions)
    files = reference_files(args.references)
    results = evaluate(
        files, conditions, predict_default(args.checkpoint), args.excerpt, args.every
    )
    summary = summarize(results, conditions)
    command = "python scripts/evaluate_lossy.py " + " ".join(
        [
            str(args.references),
            str(args.out),
            f"--excerpt {args.excerpt:g}",
            f"--every {args.every:g}",
            f"--conditions {','.join(conditions)}",
        ]
    )
    write_outputs(args.out, results, summary, command)
    print((args.out / "lossy.md").read_text())
    return 1 if any(entry["failed"] for entry in summary.values()) else 0


if __name__ == "__main__":
    main()
