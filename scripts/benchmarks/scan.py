"""Compare portable selective-scan strategies on AEROMamba's shapes (inference and training).

    python scripts/benchmarks/scan.py [--seconds 10] [--repeats 3] [--compile] [--device cuda]

Candidates (all float32, same mathematics as `aeromamba.ops.selective_scan`):
- `step`: the reference `selective_scan_ref`, one time step per iteration, vectorised over
  batch, channels and state;
- `blocked`: the project's scan (time blocks, in-place recurrence, recomputing backward);
- `chunked-log`: per chunk, h_t = e^{S_t} (h_0 + Σ_s e^{-S_s} b_s) with S the cumulative
  log-decay, evaluated with cumsum (no Python loop inside a chunk), float64 inside a chunk;
- `parallel`: Hillis–Steele associative scan of (a, b) pairs, log2(L) vectorised steps;
- `native`: the compiled C scan used for CPU inference (`aeromamba.ops.native_scan`), one
  sequence per loop with its state in registers; inference only, CPU only;
- `triton`: the Triton kernel used for CUDA inference (`aeromamba.ops.triton_scan`), with
  4 (the project's), 8 or 16 channels per program; inference only, CUDA only;
- with `--compile`, `torch.compile` of `step` and `blocked`, and a scan whose 16-step block
  body (decays, recurrence, contraction) is one compiled graph (inference only).
The shapes are those of the encoder's Mamba layers for one clip of `--seconds` seconds:
(sequences, d_inner) = (64, 24), (16, 48), (8, 96), (4, 192); d_state 16.
Prints a Markdown table of median times and the max error against `step`.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _measure import median_seconds
from torch import Tensor

from aeromamba.allocator import keep_freed_memory
from aeromamba.ops.native_scan import native_scan
from aeromamba.ops.scan import block_scan
from aeromamba.ops.scan_ref import selective_scan_ref
from aeromamba.ops.triton_scan import launch_scan, triton_scan_available

SHAPES = [(64, 24), (16, 48), (8, 96), (4, 192)]
D_STATE = 16


def scan_chunked_log(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int = 32
) -> Tensor:
    """Closed form inside chunks via cumulative sums; sequential only across chunks."""
    batch, d_inner, length = u.shape
    y = []
    h = u.new_zeros(batch, d_inner, A.shape[1], dtype=torch.float64)
    for s in range(0, length, chunk):
        e = min(s + chunk, length)
        log_decay = (delta[..., s:e, None] * A[:, None, :]).double()  # (b, d, T, n)
        cum = log_decay.cumsum(dim=2)
        drive = ((delta * u)[..., s:e, None] * B[:, None, :, s:e].transpose(2, 3)).double()
        inner = (drive * torch.exp(-cum)).cumsum(dim=2)
        states = torch.exp(cum) * (h[:, :, None, :] + inner)
        h = states[:, :, -1]
        y.append(torch.einsum("bdtn,bnt->bdt", states, C[..., s:e].double()))
    return torch.cat(y, dim=-1).float()


def scan_parallel(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """Hillis–Steele inclusive scan of h_t = a_t h_{t-1} + b_t over the whole sequence."""
    a = torch.exp(delta[..., None] * A[:, None, :])  # (b, d, L, n)
    b = (delta * u)[..., None] * B.transpose(1, 2)[:, None]
    step = 1
    while step < a.shape[2]:
        b = torch.cat([b[:, :, :step], a[:, :, step:] * b[:, :, :-step] + b[:, :, step:]], 2)
        a = torch.cat([a[:, :, :step], a[:, :, step:] * a[:, :, :-step]], 2)
        step *= 2
    return torch.einsum("bdtn,bnt->bdt", b, C)


def _block_body(
    dt: Tensor, ut: Tensor, bt: Tensor, ct: Tensor, A: Tensor, h: Tensor
) -> tuple[Tensor, Tensor]:
    """One block of time-major steps: (outputs, last state)."""
    decay = torch.exp((dt[..., None] * A).clamp(min=-80.0))
    drive = (dt * ut)[..., None] * bt[:, :, None, :]
    ys = []
    for t in range(dt.shape[0]):
        h = decay[t] * h + drive[t]
        ys.append((h * ct[t][:, None, :]).sum(-1))
    return torch.stack(ys), h


def compiled_block_scan(block: int = 16) -> Callable:
    """A scan whose whole block body is one `torch.compile`d graph (the last, shorter block
    runs eagerly)."""
    body = torch.compile(_block_body, dynamic=False)

    def scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        batch, d_inner, length = u.shape
        ut, dt, bt, ct = (x.permute(2, 0, 1).contiguous() for x in (u, delta, B, C))
        h = u.new_zeros(batch, d_inner, A.shape[1])
        y = u.new_empty(length, batch, d_inner)
        for s in range(0, length, block):
            e = min(s + block, length)
            run = body if e - s == block else _block_body
            y[s:e], h = run(dt[s:e], ut[s:e], bt[s:e], ct[s:e], A, h)
        return y.permute(1, 2, 0)

    return scan


def make_inputs(
    sequences: int, d_inner: int, length: int, grad: bool, device: str = "cpu"
) -> list[torch.Tensor]:
    g = torch.Generator(device).manual_seed(0)
    u = torch.randn(sequences, d_inner, length, generator=g, device=device)
    delta = F.softplus(torch.randn(sequences, d_inner, length, generator=g, device=device) - 2)
    A = -torch.exp(torch.log(torch.arange(1, D_STATE + 1.0, device=device))).repeat(d_inner, 1)
    B = torch.randn(sequences, D_STATE, length, generator=g, device=device)
    C = torch.randn(sequences, D_STATE, length, generator=g, device=device)
    return [t.requires_grad_(grad) for t in (u, delta, A, B, C)]


def run_layers(fn: Callable, length: int, grad: bool, device: str) -> Tensor | None:
    """Fresh inputs of every layer shape through `fn` (and backward with `grad`): the outputs,
    flattened on the CPU, or None where `fn` is unavailable."""
    outputs = []
    for sequences, d_inner in SHAPES:
        inputs = make_inputs(sequences, d_inner, length, grad, device)
        if grad:
            out = fn(*inputs)
            out.square().sum().backward()
        else:
            with torch.inference_mode():
                out = fn(*inputs)
            if out is None:  # the native scan could not be built here
                return None
        outputs.append(out.detach().flatten().cpu())
    return torch.cat(outputs)


def measure(
    fn: Callable, length: int, grad: bool, repeats: int, device: str = "cpu"
) -> tuple[float, Tensor | None]:
    """Median seconds over `repeats` runs (after one warm-up) for all layer shapes, with the
    outputs (NaN and None where `fn` is unavailable)."""
    once = functools.partial(run_layers, fn, length, grad, device)
    out = once()  # the warm-up, and the outputs to compare
    if out is None:
        return float("nan"), None
    return median_seconds(once, repeats, device, warmup=0), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also try torch.compile")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    keep_freed_memory()  # as predict.py and train.py
    length = int(args.seconds * 11025 / 64) + 1
    # name → (scan, whether it can be trained through)
    candidates: dict[str, tuple[Callable, bool]] = {
        "step": (selective_scan_ref, True),
        "blocked (project, training)": (block_scan, True),
        "chunked-log": (scan_chunked_log, True),
        "parallel": (scan_parallel, True),
    }
    if args.device == "cpu":
        candidates["native C (project, inference)"] = (native_scan, False)
    elif triton_scan_available():
        for block_d in (4, 8, 16):
            name = f"triton, {block_d} channels per program" + (" (project)" * (block_d == 4))
            candidates[name] = (functools.partial(launch_scan, block_d=block_d), False)
    if args.compile:
        candidates["compiled block body"] = (compiled_block_scan(), False)
        candidates["blocked + compile"] = (torch.compile(block_scan, dynamic=True), True)
        # last: dynamo unrolls all L steps of this loop, a long compilation
        candidates["step + compile"] = (torch.compile(selective_scan_ref, dynamic=True), True)
    print(
        f"{length} frames ({args.seconds:g} s of 11.025 kHz audio), {args.device}, threads "
        f"{torch.get_num_threads()}\n"
    )
    print("| scan | inference (s) | forward+backward (s) | max abs error vs step |")
    print("| --- | --- | --- | --- |")
    reference = None
    for name, (fn, trains) in candidates.items():
        try:
            infer, out = measure(fn, length, False, args.repeats, args.device)
            train = "n/a"
            if trains:
                seconds, _ = measure(fn, length, True, max(1, args.repeats // 2), args.device)
                train = f"{seconds:.3f}"
        except Exception as err:  # a candidate that fails is reported, not fatal
            print(f"| {name} | failed: {type(err).__name__}: {err} | | |")
            continue
        if out is None:
            print(f"| {name} | unavailable here | | |")
            continue
        reference = out if reference is None else reference
        error = (out - reference).abs().max().item()
        print(f"| {name} | {infer:.3f} | {train} | {error:.1e} |", flush=True)


if __name__ == "__main__":
    main()
