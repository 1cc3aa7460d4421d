"""Inference speed and memory of aero, aeromamba and aeromamba_official, CPU and CUDA.

    python scripts/benchmarks/inference.py [--lengths 4,10,60,600] [--variants ...]
        [--devices cpu,cuda] [--amp none|bf16|fp16] [--rounds 1] [--out results/benchmark]
    python scripts/benchmarks/inference.py --interleave N [--lengths ...] [--variants ...]
        [--devices ...]

Each (variant, length, device) case runs in its own process, so peak memory is that case's
alone: peak RSS on the CPU (ru_maxrss), `max_memory_allocated` on CUDA. Times are the median
wall time of several runs after a warm-up; inputs up to 60 s go through one forward pass,
longer ones through the chunked OLA path of `predict.py` (10 s chunks, 1 s overlap). The
real-time factor is seconds of 44.1 kHz output per wall second. Writes OUT.md and OUT.json.
Cases run with glibc malloc set to keep freed memory, as predict.py does (`aeromamba.allocator`);
`--system-malloc` measures the default allocator instead; `--amp bf16|fp16` runs every case
under autocast (as `predict.py amp=...`). `--rounds N` runs every case in N processes, taking
the variants in turn, and reports the median over all their runs: on a machine whose speed
drifts (a shared VM), the ratios between variants then rest on the same spells.
`--interleave N` measures time alone, closer still: all variants in one process, their
passes alternated N times, printing median times and the median of the per-alternation ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from _measure import alternate, median_ratio, peak_memory_mb, repeat, reset_peak_memory

OLA_FROM = 60.0  # seconds; longer inputs use the chunked path
REPEATS = {4.0: 5, 10.0: 3, 60.0: 3}


def make_runner(variant: str, seconds: float, device: str, amp: str = "none") -> Callable:
    """A warmed-up callable that enhances a random clip of `seconds` with `variant` once
    (random weights: speed does not depend on them)."""
    from aeromamba.enhance import autocast, enhance
    from aeromamba.models import make_generator

    torch.manual_seed(0)
    model = make_generator(variant).to(device).eval()
    lr = torch.randn(1, round(seconds * 11025)) * 0.1

    def once(x: torch.Tensor = lr) -> None:
        with torch.inference_mode():
            if seconds > OLA_FROM:
                enhance(model, x.to(device), chunk=10.0, overlap=1.0, batch_size=4, amp=amp)
            else:
                with autocast(torch.device(device), amp):
                    model(x.to(device)[None])

    once(lr[:, : round(min(seconds, 2 * 10.0 * 4) * 11025)])  # warm-up: one batch of chunks
    return once


def run_case(variant: str, seconds: float, device: str, amp: str = "none") -> dict:
    """Time one case in this process, with its peak memory."""
    once = make_runner(variant, seconds, device, amp)
    reset_peak_memory(device)
    times = [took.wall for took in repeat(once, REPEATS.get(seconds, 1), device, warmup=0)]
    case = {"variant": variant, "seconds": seconds, "device": device, "amp": amp}
    return summarise(case, times, peak_memory_mb(device))


def interleaved(variants: list[str], seconds: float, device: str, amp: str, runs: int) -> str:
    """Markdown lines: every variant in this process, their passes alternated `runs` times, so
    a slow spell of the machine hits them alike; median times, and the time ratios as the
    median of the ratios within each alternation. No memory: the models share the process."""
    runners = {variant: make_runner(variant, seconds, device, amp) for variant in variants}
    timings = alternate(runners, runs, device, warmup=0)  # make_runner warmed them up
    times = {variant: [took.wall for took in timings[variant]] for variant in variants}
    length = f"{seconds:g} s" + (" (OLA)" if seconds > OLA_FROM else "")
    medians = ", ".join(f"{v} {statistics.median(t):.3f} s" for v, t in times.items())
    lines = [f"- {length}, {device}, {runs} alternations: {medians}"]
    for slow, fast in (("aero", "aeromamba"), ("aeromamba", "aeromamba_official")):
        if slow in times and fast in times:
            ratio = median_ratio(times[slow], times[fast])
            lines.append(f"  - {slow}/{fast} time {ratio:.2f}×")
    return "\n".join(lines)


def summarise(case: dict, times: list[float], peak_mb: float) -> dict:
    """A table row: the case, the median of its run times, the real-time factor, peak memory."""
    median = statistics.median(times)
    return {
        **case,
        "median_s": median,
        "rtf": case["seconds"] / median,
        "peak_mb": peak_mb,
        "runs": len(times),
        "times": times,
    }


def merge(rounds: list[dict]) -> dict:
    """One row from the same case run in several processes (rounds): the median over all their
    runs and the highest peak; a failure in any round is the row."""
    failed = [r for r in rounds if "error" in r]
    if failed:
        return failed[0]
    case = {k: rounds[0][k] for k in ("variant", "seconds", "device", "amp")}
    times = [t for r in rounds for t in r["times"]]
    return summarise(case, times, max(r["peak_mb"] for r in rounds))


def spawn(
    variant: str, seconds: float, device: str, timeout: float, system_malloc: bool, amp: str
) -> dict:
    command = [sys.executable, __file__, "--case", variant, str(seconds), device, "--amp", amp]
    command += ["--system-malloc"] if system_malloc else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {
            "variant": variant,
            "seconds": seconds,
            "device": device,
            "error": f"over {timeout:.0f} s",
        }
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        if done.returncode < 0:
            reason = f"killed by signal {-done.returncode} (out of memory?)"
        return {"variant": variant, "seconds": seconds, "device": device, "error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], device: str) -> str:
    lines = [
        f"**{device}**",
        "",
        "| variant | input | time (s) | RTF | peak memory (MB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["device"] != device:
            continue
        length = f"{r['seconds']:g} s" + (" (OLA)" if r["seconds"] > OLA_FROM else "")
        if "error" in r:
            lines.append(f"| {r['variant']} | {length} | failed: {r['error']} | | |")
        else:
            lines.append(
                f"| {r['variant']} | {length} | {r['median_s']:.3f} | "
                f"{r['rtf']:.1f} | {r['peak_mb']:.0f} |"
            )
    ratios = []
    for seconds in sorted({r["seconds"] for r in rows}):
        found = {
            r["variant"]: r
            for r in rows
            if r["device"] == device and r["seconds"] == seconds and "error" not in r
        }
        if "aeromamba" not in found:
            continue
        mamba = found["aeromamba"]
        if "aero" in found:
            ratios.append(
                f"- {seconds:g} s: aero/aeromamba time "
                f"{found['aero']['median_s'] / mamba['median_s']:.2f}×, "
                f"memory {found['aero']['peak_mb'] / mamba['peak_mb']:.2f}×"
            )
        if "aeromamba_official" in found:
            off = found["aeromamba_official"]
            ratios.append(
                f"- {seconds:g} s: aeromamba/aeromamba_official time "
                f"{mamba['median_s'] / off['median_s']:.2f}×"
            )
    return "\n".join(lines + [""] + ratios) + "\n"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, metavar=("VARIANT", "SECONDS", "DEVICE"))
    parser.add_argument("--lengths", default="4,10,60,600")
    parser.add_argument("--variants", default="aero,aeromamba,aeromamba_official")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", default="results/benchmark")
    parser.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument(
        "--rounds", type=int, default=1, help="processes per case, variants taken in turn"
    )
    parser.add_argument(
        "--interleave",
        type=int,
        metavar="N",
        help="time only, all variants in this process, their passes alternated N times",
    )
    args = parser.parse_args()
    if args.rounds < 1 or (args.interleave is not None and args.interleave < 1):
        parser.error("--rounds and --interleave must be at least 1")
    from aeromamba.devices import configure_cpu

    # one thread per core (within the CPUs this process may use) and, as predict.py, glibc
    # malloc keeping freed memory: the cases' processes (and --interleave's) are timed so
    configure_cpu(None, keep_freed=not args.system_malloc)
    if args.case:
        variant, seconds, device = args.case
        print(json.dumps(run_case(variant, float(seconds), device, args.amp)))
        return
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    from aeromamba.enhance import check_amp
    from aeromamba.errors import UsageError

    try:
        for device in devices:
            check_amp(args.amp, torch.device(device))
    except UsageError as err:
        parser.error(str(err))
    variants = args.variants.split(",")
    if args.interleave:
        for device in devices:
            for seconds in [float(s) for s in args.lengths.split(",")]:
                print(interleaved(variants, seconds, device, args.amp, args.interleave), flush=True)
        return
    rows = []
    for device in devices:
        for seconds in [float(s) for s in args.lengths.split(",")]:
            # Rounds alternate the variants, so a slow spell of the machine hits them alike.
            rounds: dict[str, list[dict]] = {variant: [] for variant in variants}
            for _ in range(args.rounds):
                for variant in variants:
                    row = spawn(
                        variant, seconds, device, args.timeout, args.system_malloc, args.amp
                    )
                    print(json.dumps(row), flush=True)
                    rounds[variant].append(row)
            rows += [merge(rounds[variant]) for variant in variants]
    machine = (
        f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, "
        + ("glibc's default malloc" if args.system_malloc else "malloc keeping freed memory")
        + ("" if args.amp == "none" else f", {args.amp} autocast")
    )
    if torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()}"
    text = f"Machine: {machine}\n\n" + "\n".join(table(rows, d) for d in devices)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
