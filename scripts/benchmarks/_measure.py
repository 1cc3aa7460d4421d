"""Timing and peak memory for the benchmark scripts in this folder (imported as `_measure`).

Wall time is `time.perf_counter`, CPU time `time.process_time` (this process, all its
threads); on CUDA the device's queued work is waited for before and after, so a time is the
work's own. Peak memory is `max_memory_allocated` on CUDA and the process's peak RSS on the
CPU (Linux `ru_maxrss`, kB; it cannot be reset, so a clean CPU peak needs its own process).
Sizes are MB of 2**20 bytes. torch is imported only for a CUDA device: memory.py's parent
process must stay small, since Linux starts an exec'd child's `ru_maxrss` at its parent's.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

Key = TypeVar("Key")


@dataclass
class Timing:
    """Seconds some work took: wall clock, and CPU time of this process."""

    wall: float = 0.0
    cpu: float = 0.0


def is_cuda(device: str | torch.device) -> bool:
    """Whether `device` ("cpu", "cuda", "cuda:1" or a torch.device) is a CUDA device."""
    return str(device).split(":")[0] == "cuda"


def synchronize(device: str | torch.device) -> None:
    """Wait for the work queued on a CUDA device; nothing on the CPU."""
    if is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


@contextmanager
def timing(device: str | torch.device = "cpu") -> Iterator[Timing]:
    """`with timing(device) as took: work()`, then `took.wall` and `took.cpu` are its seconds."""
    synchronize(device)
    took = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    yield took
    synchronize(device)
    took.wall, took.cpu = time.perf_counter() - wall, time.process_time() - cpu


def alternate(
    runs: Mapping[Key, Callable[[], object]],
    rounds: int,
    device: str | torch.device = "cpu",
    warmup: int = 1,
) -> dict[Key, list[Timing]]:
    """Each run's timings: `warmup` untimed calls of each, then `rounds` rounds calling them in
    turn, so a slow spell of a shared machine hits them alike."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[Key, list[Timing]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            with timing(device) as took:
                run()
            times[key].append(took)
    return times


def repeat(
    run: Callable[[], object], repeats: int, device: str | torch.device = "cpu", warmup: int = 1
) -> list[Timing]:
    """Timings of `repeats` calls of `run`, after `warmup` untimed ones."""
    return alternate({0: run}, repeats, device, warmup)[0]


def median_seconds(
    run: Callable[[], object], repeats: int, device: str | torch.device = "cpu", warmup: int = 1
) -> float:
    """Median wall seconds of `repeats` calls of `run`, after `warmup` untimed ones."""
    return statistics.median(took.wall for took in repeat(run, repeats, device, warmup))


def median_ratio(values: Iterable[float], references: Iterable[float]) -> float:
    """Median of value / reference, pair by pair (times from the same round or alternation)."""
    return statistics.median(v / r for v, r in zip(values, references, strict=True))


def reset_peak_memory(device: str | torch.device) -> None:
    """Start a CUDA device's peak afresh; nothing on the CPU (peak RSS cannot be reset)."""
    if is_cuda(device):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: str | torch.device = "cpu") -> float:
    """Peak memory so far in MB: `max_memory_allocated` on CUDA, this process's peak RSS on
    the CPU."""
    if is_cuda(device):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB
