"""Peak memory and speed of predict's file path on short and long files.

    python scripts/benchmark_memory.py [--variant aeromamba] [--lengths 30,600] [--channels 2]

Writes a music-like file of each length, upsamples it in a fresh process (so the peak RSS is
that run's alone) and prints a Markdown table: seconds, real-time factor (audio seconds per
wall second) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(variant: str, source: str, target: str) -> None:
    """Upsample `source` with a randomly initialised full-size model; print JSON stats."""
    import torch

    from aeromamba.inference import predict_file
    from aeromamba.models import make_generator

    torch.manual_seed(0)
    model = make_generator(variant).eval()
    start = time.perf_counter()
    seconds = predict_file(model, Path(source), Path(target))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "wall": wall, "peak_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3)
    parser.add_argument("--variant", default="aeromamba")
    parser.add_argument("--lengths", default="30,600")
    parser.add_argument("--channels", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from aeromamba.audio import write_audio
    from aeromamba.data.synthetic import music_clip

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for length in [float(x) for x in args.lengths.split(",")]:
            clip = music_clip(min(length, 60.0), 44100, seed=1)
            audio = np.tile(clip, int(np.ceil(length / 60.0)))[: round(length * 44100)]
            source = Path(folder) / f"in_{length:g}.wav"
            write_audio(source, np.stack([audio] * args.channels), 44100, subtype="PCM_16")
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    args.variant,
                    str(source),
                    str(Path(folder) / f"out_{length:g}.wav"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            stats = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((length, stats))
    print(f"| {args.variant}, {args.channels} channels | wall (s) | RTF | peak RSS (MB) |")
    print("| --- | --- | --- | --- |")
    for length, s in rows:
        print(
            f"| {length:g} s | {s['wall']:.1f} | {s['seconds'] / s['wall']:.2f} | "
            f"{s['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
