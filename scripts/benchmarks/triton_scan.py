"""Seconds per forward + backward pass of the Triton selective scan for several tiles.

    python scripts/benchmarks/triton_scan.py [--seconds 4] [--batch 4] [--repeats 5]

CUDA only. The inputs have the shapes of AEROMamba's four encoder Mamba layers for `--batch`
clips of `--seconds` s, as in scripts/benchmarks/scan.py: (sequences per clip, d_inner) =
(64, 24), (16, 48), (8, 96), (4, 192), d_state 16. A tile is (channels per program, time steps per
chunk, warps); the time is the median over `--repeats` of the four layers' scans (softplus,
D and gate included), after one pass that compiles. Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import torch
from _measure import median_seconds

from aeromamba.ops.triton_scan import Tile, selective_scan_triton

SHAPES = [(64, 24), (16, 48), (8, 96), (4, 192)]
D_STATE = 16
TILES = [Tile()] + [
    Tile(block_d, chunk, warps)
    for block_d, chunk, warps in [(2, 64, 4), (8, 64, 4), (4, 32, 4), (4, 128, 4), (4, 64, 8)]
    + [(8, 64, 8), (8, 128, 8)]
]


def layer_inputs(sequences: int, d_inner: int, length: int) -> dict[str, torch.Tensor]:
    """Random inputs of one layer's scan on the GPU, leaves that want a gradient."""
    r = lambda *shape: torch.randn(*shape, device="cuda")  # noqa: E731
    inputs = dict(
        u=r(sequences, d_inner, length),
        delta=r(sequences, d_inner, length) - 3.0,  # softplus ≈ 0.05, as Mamba's initial Δ
        A=-torch.arange(1.0, D_STATE + 1, device="cuda").repeat(d_inner, 1),
        B=r(sequences, D_STATE, length),
        C=r(sequences, D_STATE, length),
        D=r(d_inner),
        z=r(sequences, d_inner, length),
        delta_bias=r(d_inner) * 0.1,
    )
    return {k: v.requires_grad_() for k, v in inputs.items()}


def seconds(tile: Tile, layers: list[dict[str, torch.Tensor]], repeats: int) -> float:
    """Median time of forward + backward over all layers, after one pass that compiles."""

    def passes() -> None:
        for inputs in layers:
            selective_scan_triton(**inputs, delta_softplus=True, tile=tile).sum().backward()

    return median_seconds(passes, repeats, "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    length = int(args.seconds * 11025 / 64) + 1
    layers = [layer_inputs(s * args.batch, d, length) for s, d in SHAPES]
    print(f"{args.batch} x {args.seconds:g} s ({length} frames), {torch.cuda.get_device_name()}")
    print("\n| channels per program | steps per chunk | warps | forward + backward (ms) |")
    print("| --- | --- | --- | --- |")
    for tile in TILES:
        default = " (default)" * (tile == Tile())
        try:
            ms = f"{seconds(tile, layers, args.repeats) * 1e3:.2f}"
        except Exception as err:  # a tile that fails is reported, not fatal
            ms = f"failed: {type(err).__name__}: {str(err)[:80]}"
        print(f"| {tile.block_d}{default} | {tile.chunk} | {tile.num_warps} | {ms} |")


if __name__ == "__main__":
    main()
