"""The CPU scan of `native_scan.c`, compiled on first use with the system C compiler.

Inference only (nothing is kept for a gradient): each (batch, channel) sequence runs through
time with its state in registers, instead of the many whole-tensor passes of the PyTorch
scan. The shared library is built once per source and instruction set into
`$AEROMAMBA_CACHE` (default `~/.cache/aeromamba`), written under a temporary name and
renamed. Without a C compiler, or with `AEROMAMBA_NATIVE_SCAN=0`, `native_scan` returns None
and the caller uses the PyTorch scan.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sysconfig
import tempfile
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger("aeromamba.native_scan")
LANES, MAX_STATE = 16, 64  # as in native_scan.c: d_state padded to whole vectors of 16
SOURCE = Path(__file__).with_name("native_scan.c")
# Instruction sets by what PyTorch detected on this CPU; a library built for one never runs
# on a CPU without it (the capability is part of its file name).
_ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_FLAGS = ["-O3", "-fPIC", "-shared", "-pthread"]


def _compiler() -> str | None:
    configured = (sysconfig.get_config_var("CC") or "").split()
    for name in configured[:1] + ["cc", "gcc", "clang"]:
        if name and shutil.which(name):
            return name
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("AEROMAMBA_CACHE", Path.home() / ".cache" / "aeromamba"))


@cache
def _library() -> ctypes.CDLL | None:
    """Build (once) and load the scan library; None where that is not possible."""
    if os.environ.get("AEROMAMBA_NATIVE_SCAN", "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found; using the PyTorch scan")
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    flags = _FLAGS + _ISA_FLAGS.get(capability, [])
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(flags).encode()).hexdigest()[:16]
    target = _cache_dir() / f"native_scan_{capability.lower()}_{digest}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                built = Path(tmp) / target.name
                subprocess.run(
                    [compiler, *flags, str(SOURCE), "-o", str(built)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                os.replace(built, target)  # atomic: concurrent builds cannot clash
        library = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or err
        log.warning("could not build the native CPU scan (%s); using the PyTorch scan", detail)
        return None
    library.selective_scan_f32.restype = ctypes.c_int
    library.selective_scan_f32.argtypes = (
        [ctypes.c_void_p] * 8 + [ctypes.c_int64] * 4 + [ctypes.c_int]
    )
    return library


def native_scan_available() -> bool:
    """Whether the compiled CPU scan can be used in this process."""
    return _library() is not None


def native_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """y_t = <C_t, h_t>, h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t on the CPU, or None when the
    library is unavailable or the inputs are not CPU float32 with d_state ≤ 64.

    u, delta (Δ, already positive) (batch, d_inner, L); A (d_inner, d_state); B, C
    (batch, d_state, L). With D (d_inner,) and z (batch, d_inner, L), Mamba's output
    (y + D u) ⊙ SiLU(z) instead, computed as each sequence ends (no passes over whole tensors).
    Returns (batch, d_inner, L). No gradient flows through it.
    """
    if (D is None) != (z is None):
        raise ValueError("give both D and z, or neither")
    if z is not None and (z.shape != u.shape or D.shape != u.shape[1:2]):
        raise ValueError(f"z {tuple(z.shape)} and D {tuple(D.shape)} do not fit u {tuple(u.shape)}")
    tensors = [t for t in (u, delta, A, B, C, D, z) if t is not None]
    if A.shape[1] > MAX_STATE or any(
        t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors
    ):
        return None  # checked first: nothing is built for inputs it would not take
    library = _library()
    if library is None:
        return None
    batch, d_inner, length = u.shape
    d_state = A.shape[1]
    pad = -d_state % LANES  # zero-padded states stay 0 and add nothing to y
    u, delta = u.contiguous(), delta.contiguous()
    if z is not None:
        D, z = D.contiguous(), z.contiguous()
    A = F.pad(A, (0, pad)).contiguous()
    bt = F.pad(B.transpose(1, 2), (0, pad)).contiguous()
    ct = F.pad(C.transpose(1, 2), (0, pad)).contiguous()
    y = torch.empty_like(u)
    pointers = [None if t is None else t.data_ptr() for t in (u, delta, A, bt, ct, D, z, y)]
    status = library.selective_scan_f32(
        *pointers, batch, d_inner, length, d_state + pad, min(torch.get_num_threads(), 256)
    )
    if status != 0:
        raise RuntimeError(f"native scan refused its arguments (status {status})")
    return y
