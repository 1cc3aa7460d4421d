"""The CPU scan of `native_scan.c`, compiled on first use with the system C compiler.

Each (batch, channel) sequence runs through time with its state in registers, instead of the
many whole-tensor passes of the PyTorch scan. `native_scan` is the inference scan (nothing
kept for a gradient); `native_scan_with_grad` the training one, an autograd function whose
forward pass keeps the state entering every `CHUNK` steps and whose backward pass recomputes
each chunk's states from it (in cache) and runs the adjoint recurrence. The shared library
is built once per source and instruction set into `$AEROMAMBA_CACHE` (default
`~/.cache/aeromamba`), written under a temporary name and renamed. Without a C compiler, or
with `AEROMAMBA_NATIVE_SCAN=0`, both return None and the caller uses the PyTorch scan.
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
MAX_CHUNK = 256  # as in native_scan.c
# Steps between the states the training scan keeps: a chunk's recomputed states and decays
# (2 × 64 × 16 floats at d_state 16) stay in L1 during its backward pass.
CHUNK = 64
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
        [ctypes.c_void_p] * 9 + [ctypes.c_int64] * 5 + [ctypes.c_int]
    )
    library.selective_scan_backward_f32.restype = ctypes.c_int
    library.selective_scan_backward_f32.argtypes = (
        [ctypes.c_void_p] * 16 + [ctypes.c_int64] * 5 + [ctypes.c_int]
    )
    return library


def native_scan_available() -> bool:
    """Whether the compiled CPU scan can be used in this process."""
    return _library() is not None


def _usable(*tensors: torch.Tensor | None) -> bool:
    """CPU float32 inputs (None ignored) with d_state (A's columns) ≤ 64, and the library."""
    A = tensors[2]
    given = [t for t in tensors if t is not None]
    if A.shape[1] > MAX_STATE or any(
        t.device.type != "cpu" or t.dtype != torch.float32 for t in given
    ):
        return False  # checked first: nothing is built for inputs it would not take
    return _library() is not None


def _check_gate(u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> None:
    if (D is None) != (z is None):
        raise ValueError("give both D and z, or neither")
    if z is not None and (z.shape != u.shape or D.shape != u.shape[1:2]):
        raise ValueError(f"z {tuple(z.shape)} and D {tuple(D.shape)} do not fit u {tuple(u.shape)}")


def _state_major(
    A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (d_inner, n), B and C (batch, n, L) as the kernel reads them: d_state zero-padded to
    whole vectors (padded states stay 0 and add nothing to y), B and C as (batch, L, n)."""
    pad = -A.shape[1] % LANES
    A = F.pad(A, (0, pad)).contiguous()
    bt = F.pad(B.transpose(1, 2), (0, pad)).contiguous()
    ct = F.pad(C.transpose(1, 2), (0, pad)).contiguous()
    return A, bt, ct


def _pointers(*tensors: torch.Tensor | None) -> list[int | None]:
    return [None if t is None else t.data_ptr() for t in tensors]


def _threads() -> int:
    return min(torch.get_num_threads(), 256)


def _forward(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    states: torch.Tensor | None,
) -> torch.Tensor:
    """The kernel's forward scan; A, B, C already as `_state_major` makes them; `states` (or
    None) receives the state entering every CHUNK steps."""
    batch, d_inner, length = u.shape
    y = torch.empty_like(u)
    chunk = CHUNK if states is not None else MAX_CHUNK
    status = _library().selective_scan_f32(
        *_pointers(u, delta, A, B, C, D, z, y, states),
        batch,
        d_inner,
        length,
        A.shape[1],
        chunk,
        _threads(),
    )
    if status != 0:
        raise RuntimeError(f"native scan refused its arguments (status {status})")
    return y


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
    _check_gate(u, D, z)
    if not _usable(u, delta, A, B, C, D, z):
        return None
    if z is not None:
        D, z = D.contiguous(), z.contiguous()
    return _forward(u.contiguous(), delta.contiguous(), *_state_major(A, B, C), D, z, None)


def native_scan_with_grad(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
) -> torch.Tensor | None:
    """Mamba's gated scan (y + D u) ⊙ SiLU(z) as `native_scan` computes it, differentiable in
    all seven inputs; None where `native_scan` would return None. Shapes as `native_scan`'s.
    Memory kept for the backward pass: the inputs and (batch, d_inner, L / CHUNK, d_state)
    states."""
    _check_gate(u, D, z)
    if not _usable(u, delta, A, B, C, D, z):
        return None
    return _GatedScan.apply(u, delta, A, B, C, D, z)


class _GatedScan(torch.autograd.Function):
    """The compiled gated scan and its compiled backward pass (see the module's docstring)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z):  # autograd signature
        u, delta, D, z = (t.contiguous() for t in (u, delta, D, z))
        A_, bt, ct = _state_major(A, B, C)
        batch, d_inner, length = u.shape
        chunks = -(-length // CHUNK)
        states = u.new_empty(batch * d_inner, chunks, A_.shape[1])
        out = _forward(u, delta, A_, bt, ct, D, z, states)
        ctx.save_for_backward(u, delta, A_, bt, ct, D, z, states)
        ctx.d_state = A.shape[1]
        return out

    @staticmethod
    def backward(ctx, grad):
        u, delta, A_, bt, ct, D, z, states = ctx.saved_tensors
        batch, d_inner, length = u.shape
        n_state, threads = A_.shape[1], min(_threads(), batch)
        du, ddelta, dz = (torch.empty_like(u) for _ in range(3))
        dbt, dct = torch.zeros_like(bt), torch.zeros_like(ct)
        dA = u.new_zeros(threads, d_inner, n_state)  # one slice per thread
        dD = u.new_zeros(threads, d_inner)
        status = _library().selective_scan_backward_f32(
            *_pointers(u, delta, A_, bt, ct, D, z, states, grad.float().contiguous()),
            *_pointers(du, ddelta, dA, dbt, dct, dD, dz),
            batch,
            d_inner,
            length,
            n_state,
            CHUNK,
            threads,
        )
        if status != 0:
            raise RuntimeError(f"native scan backward refused its arguments (status {status})")
        n = ctx.d_state
        return (
            du,
            ddelta,
            dA.sum(0)[:, :n],
            dbt[..., :n].transpose(1, 2),
            dct[..., :n].transpose(1, 2),
            dD.sum(0),
            dz,
        )
