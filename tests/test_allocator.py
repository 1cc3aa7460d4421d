"""With `keep_freed_memory`, repeated passes reuse freed tensor memory instead of faulting
fresh pages in (glibc only)."""

import platform
import subprocess
import sys

import pytest

# Eight passes of the same allocation pattern (tensors of 32 and 64 MB, above glibc's largest
# default mmap threshold) after one warm-up pass; prints the page faults of the eight.
PROBE = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from aeromamba.allocator import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    x = torch.ones(2**24)
    y = torch.ones(2**23) * x[: 2**23]
    return float(y.sum())
step()
before = faults()
for _ in range(8):
    step()
print(faults() - before)
"""
PAGES = 8 * (64 + 32 + 32) * 2**20 // 4096  # what eight passes touch


def page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_repeated_passes_reuse_freed_memory():
    kept, default = page_faults("keep"), page_faults("default")
    if default < PAGES // 2:
        pytest.skip(f"the default allocator already avoids page faults here ({default})")
    # measured: 33k-90k kept (glibc bins fragment now and then) against 262k without
    assert kept < default // 2, f"{kept} page faults with freed memory kept, {default} without"
