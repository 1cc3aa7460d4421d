"""Seconds per training step (generator + discriminator step, Adam) on this machine.

    python scripts/benchmarks/training.py [--variant aeromamba] [--channels 48] [--batch 4]
        [--segment 4] [--steps 3] [--device cpu] [--amp none|bf16|fp16] [--system-malloc]
        [--no-adversarial] [--discriminator K=V,...]... [--profile FILE]
        [--against ROOT --rounds N]

Uses the project's Solver step on random 11.025/44.1 kHz batches (the speed does not depend
on the data); prints the median over `--steps` steps after one warm-up step (wall seconds,
and CPU seconds of this process: on a shared machine a one-thread run's CPU seconds are its
speed), the peak memory (`max_memory_allocated` on CUDA, peak RSS on the CPU) and the
discriminator's parameter count. glibc malloc keeps freed memory, as in train.py;
`--system-malloc` measures the default allocator.

`--discriminator` overrides the discriminator's settings (`ndf=8,max_channels=256`; `paper`
for none); given several times, one solver per setting in this process, their steps
alternated, with each one's median time relative to the first. `--profile FILE` writes
`torch.profiler`'s table of one more step (sorted by self CPU time) to FILE.
`--against ROOT` alternates `--rounds` runs of this script on ROOT's `aeromamba` package (an
earlier revision, e.g. from `git worktree add`) with runs on this tree's, each in its own
process, and prints the median of the per-round time ratios ROOT / this tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from _measure import alternate, median_ratio, peak_memory_mb, reset_peak_memory

from aeromamba.allocator import keep_freed_memory
from aeromamba.models import make_discriminator, make_generator
from aeromamba.training.distributed import World
from aeromamba.training.solver import Solver, TrainConfig

THIS_TREE = Path(__file__).resolve().parents[2]  # the checkout holding scripts/benchmarks


def discriminator_settings(text: str) -> dict[str, int]:
    """'ndf=8,max_channels=256' → {'ndf': 8, 'max_channels': 256}; 'paper' → {}."""
    if text == "paper":
        return {}
    try:
        return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K=V,... with integer V, got {text!r}") from None


def make_solver(args: argparse.Namespace, discriminator: dict[str, int]) -> Solver:
    torch.manual_seed(0)
    return Solver(
        make_generator(args.variant, channels=args.channels),
        make_discriminator(**discriminator),
        [],
        None,
        TrainConfig(epochs=1, batch_size=args.batch, amp=args.amp, adversarial=args.adversarial),
        Path(tempfile.mkdtemp(prefix="aeromamba-bench-")),
        torch.device(args.device),
        World(),
        {},
        logger=None,
    )


def profile_step(solver: Solver, lr: torch.Tensor, hr: torch.Tensor, path: Path) -> None:
    """torch.profiler's table of one step, the 30 ops of most self CPU time, into `path`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        solver.train_step(lr, hr)
    path.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def measure(args: argparse.Namespace) -> list[dict]:
    """One result per discriminator setting: median wall and CPU seconds per step."""
    device = torch.device(args.device)
    settings = args.discriminator or [{}]
    solvers = [make_solver(args, setting) for setting in settings]
    length = round(args.segment * 11025)
    lr = torch.randn(args.batch, 1, length, device=device) * 0.1
    hr = torch.randn(args.batch, 1, 4 * length, device=device) * 0.1
    reset_peak_memory(device)
    steps = {index: partial(solver.train_step, lr, hr) for index, solver in enumerate(solvers)}
    times = alternate(steps, args.steps, device)  # after one warm-up step each
    if args.profile:
        profile_step(solvers[0], lr, hr, args.profile)
    walls = [[took.wall for took in times[index]] for index in steps]
    return [
        {
            "discriminator": setting,
            "discriminator_parameters": sum(p.numel() for p in solver.discriminator.parameters()),
            "wall_s": statistics.median(walls[index]),
            "cpu_s": statistics.median(took.cpu for took in times[index]),
            "walls": walls[index],
            "relative": median_ratio(walls[index], walls[0]),  # per alternation, to the first
        }
        for index, (setting, solver) in enumerate(zip(settings, solvers, strict=True))
    ]


def against(args: argparse.Namespace, argv: list[str]) -> None:
    """Alternate runs on ROOT's package and this tree's, one process each; print the ratios."""
    child = without_options(argv, ("--against", "--rounds")) + ["--json"]
    trees = {"baseline": args.against.resolve(), "this tree": THIS_TREE}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name, root in trees.items():
            env = {**os.environ, "PYTHONPATH": str(root)}
            run = subprocess.run(
                [sys.executable, __file__, *child], env=env, capture_output=True, text=True
            )
            if run.returncode:
                sys.exit(f"the run on {root} failed:\n{run.stderr[-3000:]}")
            runs[name].append(json.loads(run.stdout.splitlines()[-1]))
            print(f"round {round_ + 1} {name} ({root}): {run.stdout.splitlines()[-1]}", flush=True)
    for key, what in (("wall_s", "wall"), ("cpu_s", "CPU")):
        medians = ", ".join(
            f"{name} {statistics.median(r[key] for r in results):.3f} s"
            for name, results in runs.items()
        )
        baseline, this_tree = ([r[key] for r in results] for results in runs.values())
        ratio = median_ratio(baseline, this_tree)
        print(f"median {what} seconds per step: {medians}; baseline / this tree {ratio:.2f}x")


def without_options(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """`argv` less each of `options` and its value (`--opt VALUE` or `--opt=VALUE`)."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.split("=")[0] in options:
            skip = not skip and "=" not in arg
            continue
        kept.append(arg)
    return kept


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
    parser.add_argument("--no-adversarial", dest="adversarial", action="store_false")
    parser.add_argument("--discriminator", type=discriminator_settings, action="append")
    parser.add_argument("--profile", type=Path, metavar="FILE")
    parser.add_argument("--against", type=Path, metavar="ROOT")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON line (used by --against)")
    args = parser.parse_args()
    if args.against:
        against(args, sys.argv[1:])
        return
    if not args.system_malloc:
        keep_freed_memory()  # as train.py
    results = measure(args)
    peak = peak_memory_mb(args.device)
    if args.json:
        print(json.dumps({**results[0], "peak_mb": peak}))
        return
    for result in results:
        setting = ",".join(f"{k}={v}" for k, v in result["discriminator"].items()) or "paper"
        which = (
            f"discriminator {setting} ({result['discriminator_parameters']:,} parameters)"
            if args.adversarial
            else "no discriminator"
        )
        print(
            f"{args.variant} (channels {args.channels}), batch {args.batch} x {args.segment:g} s, "
            f"{args.device}, amp {args.amp}, {torch.get_num_threads()} threads"
            f"{', default malloc' if args.system_malloc else ''}, {which}: "
            f"median {result['wall_s']:.3f} s per step ({result['cpu_s']:.3f} CPU s) over "
            f"{args.steps} steps, {result['relative']:.2f}x the first's time"
        )
    print(f"peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
