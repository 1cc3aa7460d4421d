"""Device selection and CPU thread settings shared by training, inference and evaluation."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from aeromamba.allocator import keep_freed_memory

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # the `amp=` options but none
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2 CPU quota: "QUOTA PERIOD" or "max ..."


def select_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU; otherwise the named device (checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} asked for, but CUDA is not available")
    return device


def quota_cpus(cpu_max: str) -> int | None:
    """CPUs granted by a cgroup v2 `cpu.max` line ("200000 100000" → 2); None without a quota."""
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return max(1, math.ceil(int(fields[0]) / int(fields[1])))


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a container's CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota = quota_cpus(CGROUP_CPU_MAX.read_text())
    except (OSError, ValueError):
        quota = None
    return min(count or 1, quota or math.inf)


def set_cpu_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op CPU threads and return the count in use.

    `threads` None keeps PyTorch's default (one per core) but never more than
    `available_cpus()`: in a container limited to 2 CPUs of a 64-core host, 64 threads would
    take turns on 2 CPUs.
    """
    if threads is None:
        threads = min(torch.get_num_threads(), available_cpus())
    elif not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive number or null, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def configure_cpu(threads: int | None, keep_freed: bool) -> int:
    """The process-wide CPU settings of predict.py, test.py and the benchmarks: glibc malloc
    keeps freed memory when `keep_freed` (see `aeromamba.allocator`), and
    `set_cpu_threads(threads)`, whose count is returned; ValueError for a bad `threads`."""
    if keep_freed:
        keep_freed_memory()
    return set_cpu_threads(threads)
