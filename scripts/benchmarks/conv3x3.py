"""oneDNN's direct convolution against NNPACK for the decoder's 3×3 convolutions (CPU inference).

    python scripts/benchmarks/conv3x3.py [--seconds 10] [--repeats 5]

The shapes are those of the decoder's rewrite convolutions for one clip of `--seconds`
seconds (in → out channels × frequency rows), plus 48 channels × 256 rows (the width of the
first level). Prints a Markdown table: median time of `F.conv2d` (oneDNN) and of
`aeromamba.ops.nnpack.nnpack_conv3x3`, the speed-up, the GFLOP/s of the direct convolution, and
the largest difference relative to the output's largest value.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from _measure import median_seconds

from aeromamba.allocator import keep_freed_memory
from aeromamba.ops.nnpack import nnpack_conv3x3, use_nnpack

# (in channels, frequency rows, out channels): decoder levels 0-3, then the first level's width
SHAPES = [(384, 4, 1536), (384, 8, 768), (192, 16, 384), (96, 64, 192), (48, 256, 96)]
FRAMES_PER_SECOND = 44100 / 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()
    frames = round(args.seconds * FRAMES_PER_SECOND)
    print(f"{args.seconds:g} s ({frames} frames), {torch.get_num_threads()} threads, float32\n")
    torch.manual_seed(0)
    with torch.inference_mode():
        if not use_nnpack(torch.zeros(1), torch.zeros(1, 1, 3, 3)):
            raise SystemExit("NNPACK is not available in this PyTorch build (or is switched off)")
        print("| in → out × rows | direct (ms) | NNPACK (ms) | speed-up | direct GFLOP/s | error |")
        print("| --- | --- | --- | --- | --- | --- |")
        for chin, rows, chout in SHAPES:
            x = torch.randn(1, chin, rows, frames)
            weight = torch.randn(chout, chin, 3, 3) / (3 * chin**0.5)
            bias = torch.randn(chout) * 0.1
            expected = F.conv2d(x, weight, bias, padding=1)
            error = (nnpack_conv3x3(x, weight, bias) - expected).abs().max() / expected.abs().max()
            direct = median_seconds(partial(F.conv2d, x, weight, bias, 1, 1), args.repeats)
            fast = median_seconds(partial(nnpack_conv3x3, x, weight, bias), args.repeats)
            gflop = 2 * chout * chin * 9 * rows * frames / 1e9
            print(
                f"| {chin} → {chout} × {rows} | {direct * 1e3:.0f} | {fast * 1e3:.0f} | "
                f"{direct / fast:.2f}× | {gflop / direct:.0f} | {error:.1e} |"
            )


if __name__ == "__main__":
    main()
