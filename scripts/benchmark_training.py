"""Seconds per training step (generator + discriminator step, Adam) on this machine.

    python scripts/benchmark_training.py [--variant aeromamba] [--batch 4] [--segment 4]
        [--steps 3] [--device cpu] [--amp none|bf16|fp16] [--system-malloc]

Uses the project's Solver step on random 11.025/44.1 kHz batches (the speed does not depend
on the data); prints the median over `--steps` steps after one warm-up step and the peak
memory (`max_memory_allocated` on CUDA, peak RSS on the CPU). glibc malloc
keeps freed memory, as in train.py; `--system-malloc` measures the default allocator.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from aeromamba.allocator import keep_freed_memory
from aeromamba.models import make_discriminator, make_generator
from aeromamba.training.distributed import World
from aeromamba.training.solver import Solver, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="aeromamba")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--segment", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument(
        "--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast (CUDA only)"
    )
    parser.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    args = parser.parse_args()
    if not args.system_malloc:
        keep_freed_memory()  # as train.py
    device = torch.device(args.device)
    torch.manual_seed(0)
    solver = Solver(
        make_generator(args.variant, channels=args.channels),
        make_discriminator(),
        [],
        None,
        TrainConfig(epochs=1, batch_size=args.batch, amp=args.amp),
        Path(tempfile.mkdtemp(prefix="aeromamba-bench-")),
        device,
        World(),
        {},
        logger=None,
    )
    length = round(args.segment * 11025)
    lr = torch.randn(args.batch, 1, length, device=device) * 0.1
    hr = torch.randn(args.batch, 1, 4 * length, device=device) * 0.1
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps + 1):
        start = time.perf_counter()
        solver.train_step(lr, hr)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(
        f"{args.variant} (channels {args.channels}), batch {args.batch} x {args.segment:g} s, "
        f"{device}, amp {args.amp}, {torch.get_num_threads()} threads"
        f"{', default malloc' if args.system_malloc else ''}: median "
        f"{statistics.median(times):.3f} s per step over {len(times)} steps, "
        f"peak memory {peak / 2**20:.0f} MB"
    )


if __name__ == "__main__":
    main()
