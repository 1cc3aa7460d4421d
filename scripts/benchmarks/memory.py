"""Peak memory and speed of predict's file path on short and long files.

    python scripts/benchmarks/memory.py [--variant aeromamba] [--checkpoint PATH]
        [--lengths 30,600] [--channels 2]

Writes a music-like file of each length and upsamples it with `predict_file` (predict.py's
path: streamed read, chunked batched OLA, streamed write), each in a fresh process, and prints
a Markdown table: wall seconds, real-time factor (wall / audio seconds), speed (audio / wall
seconds), peak RSS after building the model and at the end. The parent imports neither torch
nor the project: Linux starts an exec'd child's ru_maxrss at its parent's peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _measure import peak_memory_mb, timing


def child(model_spec: str, source: str, target: str) -> None:
    """Upsample `source` with a checkpoint (a path) or a randomly initialised variant (a
    name; speed and memory do not depend on the weights); print JSON stats."""
    import torch

    from aeromamba.allocator import keep_freed_memory
    from aeromamba.checkpoint import load_generator
    from aeromamba.inference import predict_file
    from aeromamba.models import VARIANTS, make_generator

    keep_freed_memory()  # as predict.py
    torch.manual_seed(0)
    if model_spec in VARIANTS:
        model = make_generator(model_spec).eval()
    else:
        model = load_generator(model_spec, torch.device("cpu"))
    model_mb = peak_memory_mb()
    with timing() as took:
        seconds = predict_file(model, Path(source), Path(target))
    stats = {"seconds": seconds, "wall": took.wall, "model_mb": model_mb}
    print(json.dumps({**stats, "peak_mb": peak_memory_mb()}))


def make_input(length: str, channels: str, path: str) -> None:
    """Write `length` seconds of music-like 16-bit audio (a 60 s clip repeated), block by
    block so this process stays small too."""
    import soundfile as sf

    from aeromamba.data.synthetic import music_clip

    total = round(float(length) * 44100)
    clip = music_clip(min(float(length), 60.0), 44100, seed=1)
    block = np.repeat(clip[:, None], int(channels), axis=1)
    with sf.SoundFile(path, "w", 44100, int(channels), "PCM_16") as out:
        for start in range(0, total, len(block)):
            out.write(block[: total - start])


def run(*args: str) -> str:
    """Run this script with `args` in a fresh interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3)
    parser.add_argument("--make", nargs=3)
    parser.add_argument("--variant", default="aeromamba")
    parser.add_argument("--checkpoint", help="use this checkpoint instead of random weights")
    parser.add_argument("--lengths", default="30,600")
    parser.add_argument("--channels", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.make:
        make_input(*args.make)
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for length in [float(x) for x in args.lengths.split(",")]:
            source = str(Path(folder) / f"in_{length:g}.wav")
            run("--make", str(length), str(args.channels), source)
            target = str(Path(folder) / f"out_{length:g}.wav")
            stdout = run("--child", args.checkpoint or args.variant, source, target)
            rows.append((length, json.loads(stdout.strip().splitlines()[-1])))
    name = args.checkpoint or f"{args.variant} (random weights)"
    print(
        f"| {name}, {args.channels} ch | wall (s) | RTF (wall/audio) | audio s per wall s "
        "| RSS with model (MB) | peak RSS (MB) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for length, s in rows:
        print(
            f"| {length:g} s | {s['wall']:.1f} | {s['wall'] / s['seconds']:.3f} | "
            f"{s['seconds'] / s['wall']:.2f} | {s['model_mb']:.0f} | {s['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
