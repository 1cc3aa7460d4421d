"""The Triton selective scan (forward and backward kernels) equals the sequential reference in
values and in every gradient, runs inference and training on CUDA, and steps aside elsewhere.

Without a GPU the kernels run under Triton's interpreter (TRITON_INTERPRET=1, kernels on CPU
tensors) when Triton is installed: lengths 1, 7, 200, 1001, odd channel and state counts,
batches above 1, lengths that are not a multiple of the chunk. The interpreter is chosen when
the kernels are defined, so those cases run in one fresh process (`interpreted`) and each test
checks one case's errors. The tests marked `gpu` need CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec

import pytest
import torch
import torch.nn.functional as F
from test_mamba import random_inputs

from aeromamba.models import make_generator
from aeromamba.ops import scan as mamba
from aeromamba.ops.scan import fused_kernels_available, selective_scan
from aeromamba.ops.scan_ref import selective_scan_ref
from aeromamba.ops.triton_scan import (
    Tile,
    launch_scan,
    selective_scan_triton,
    triton_scan,
    triton_scan_available,
)
from tests.signals import music

TOLERANCE = 1e-5  # largest error relative to max(1, largest value) for float32

# name -> inputs and options; `keys` are the optional arguments given, `delta_scale` widens Δ
# past softplus's threshold (20) on both sides, `chunk` and `block_d` set the kernels' tile
CASES = {
    "length 1": dict(length=1, batch=2, d_inner=3, d_state=4),
    "length 7, chunks of 4, 5 channels, 3 states, no gate": dict(
        length=7, batch=3, d_inner=5, d_state=3, chunk=4, keys=("D",), softplus=False
    ),
    "length 200, 3 chunks and 8 steps": dict(length=200, batch=2, d_inner=3, d_state=4),
    "length 1001, 3 chunks and 233 steps": dict(
        length=1001, batch=1, d_inner=3, d_state=2, chunk=256
    ),
    "wide delta": dict(length=50, batch=2, d_inner=3, d_state=4, chunk=16, delta_scale=15.0),
    "bare recurrence, 16 states": dict(
        length=33, batch=2, d_inner=1, d_state=16, chunk=8, block_d=2, keys=(), softplus=False
    ),
}


def gpu(test):
    """Marks a test that needs CUDA and Triton."""
    needs = pytest.mark.skipif(
        not (torch.cuda.is_available() and triton_scan_available()), reason="needs CUDA and Triton"
    )
    return pytest.mark.gpu(needs(test))


def scan_inputs(
    length: int,
    batch: int,
    d_inner: int,
    d_state: int,
    keys: tuple[str, ...] = ("D", "z", "delta_bias"),
    delta_scale: float = 1.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random float32 inputs of `selective_scan_ref`, with the optional tensors in `keys`."""
    inputs = random_inputs(length, batch=batch, d_inner=d_inner, d_state=d_state, seed=seed)
    inputs["delta"] = inputs["delta"] * delta_scale
    return {k: v for k, v in inputs.items() if k in {"u", "delta", "A", "B", "C", *keys}}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).abs().max() / max(1.0, want.abs().max())).item()


def scan_errors(
    device: str = "cpu",
    softplus: bool = True,
    chunk: int = 64,
    block_d: int = 4,
    num_warps: int = 4,
    **shape,
) -> dict[str, float]:
    """The Triton scan against the float64 reference: the error of the output and of each
    input's gradient (weighted sum of the output as the loss), and of the output computed
    without a gradient."""
    inputs = {k: v.to(device) for k, v in scan_inputs(**shape).items()}
    ours = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref = {k: v.double().requires_grad_() for k, v in inputs.items()}
    options = dict(delta_softplus=softplus, tile=Tile(block_d, chunk, num_warps))
    out = selective_scan_triton(**ours, **options)
    want = selective_scan_ref(**ref, delta_softplus=softplus)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(device)
    (out * weights).sum().backward()
    (want * weights.double()).sum().backward()
    errors = {"out": relative_error(out, want)}
    errors.update({k: relative_error(ours[k].grad, ref[k].grad) for k in inputs})
    with torch.no_grad():  # the inference launch (no boundary states) gives the same output
        errors["inference"] = relative_error(selective_scan_triton(**inputs, **options), out)
    return errors


def dtype_round_trip() -> dict[str, float]:
    """bf16 inputs (as under autocast): output and gradients come back in bf16, computed in
    float32 from the rounded inputs; returns the output's and u's gradient's errors."""
    inputs = {k: v.bfloat16() for k, v in scan_inputs(20, 2, 3, 4).items()}
    ours = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref = {k: v.double().requires_grad_() for k, v in inputs.items()}
    out = selective_scan_triton(**ours, delta_softplus=True, tile=Tile(chunk=8))
    want = selective_scan_ref(**ref, delta_softplus=True)
    out.float().sum().backward()
    want.sum().backward()
    assert out.dtype == torch.bfloat16 and ours["u"].grad.dtype == torch.bfloat16
    return {"out": relative_error(out, want), "u": relative_error(ours["u"].grad, ref["u"].grad)}


def bare_kernel_error() -> float:
    """`launch_scan` (Δ given, no D, no gate: the benchmark's kernel) against the reference."""
    inputs = scan_inputs(40, 2, 3, 5, keys=())
    inputs["delta"] = F.softplus(inputs["delta"])
    want = selective_scan_ref(**{k: v.double() for k, v in inputs.items()})
    return relative_error(launch_scan(**inputs, block_d=2), want)


def interpreted_results() -> dict:
    """Run every case in this process (which must have TRITON_INTERPRET=1)."""
    results = {name: scan_errors(**case) for name, case in CASES.items()}
    results["bf16"] = dtype_round_trip()
    results["launch_scan"] = {"out": bare_kernel_error()}
    return results


@pytest.fixture(scope="module")
def interpreted() -> dict:
    """The interpreter's results of all cases, from one fresh process."""
    if find_spec("triton") is None:
        pytest.skip("needs Triton (for its interpreter)")
    if torch.cuda.is_available():
        # the CUDA tests check the compiled kernels (and Triton 3.6's interpreter cannot loop
        # to a run-time bound under NumPy 2.5)
        pytest.skip("the interpreter check runs only where no GPU is")
    script = "import json, test_triton_scan as t; print(json.dumps(t.interpreted_results()))"
    path = os.pathsep.join(["tests", ".", os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", CASES)
def test_interpreted_kernels_match_reference(interpreted, name):
    errors = interpreted[name]
    expected = {"out", "inference", *scan_inputs(**_shape(CASES[name])).keys()}
    assert set(errors) == expected
    assert max(errors.values()) < TOLERANCE, errors


def test_interpreted_scan_keeps_bf16_and_computes_in_float32(interpreted):
    errors = interpreted["bf16"]
    # one bf16 rounding of the output (2^-8 relative), none of the arithmetic's
    assert errors["out"] < 8e-3 and errors["u"] < 8e-3, errors


def test_interpreted_bare_kernel_matches_reference(interpreted):
    assert interpreted["launch_scan"]["out"] < TOLERANCE


def _shape(case: dict) -> dict:
    """The arguments of `scan_inputs` in a case."""
    return {k: v for k, v in case.items() if k not in {"softplus", "chunk", "block_d"}}


def test_reference_gradients_pass_gradcheck():
    inputs = {k: v.double().requires_grad_() for k, v in scan_inputs(6, 2, 3, 2).items()}
    assert torch.autograd.gradcheck(
        lambda *args: selective_scan_ref(*args, delta_softplus=True), tuple(inputs.values())
    )


def test_steps_aside_off_cuda_and_when_switched_off(monkeypatch):
    inputs = random_inputs(30, batch=2, d_inner=3, d_state=16)
    assert triton_scan(**inputs) is None  # CPU tensors: the native or PyTorch scan's job
    monkeypatch.setenv("AEROMAMBA_TRITON_SCAN", "0")
    assert not triton_scan_available()


def test_refuses_inputs_of_the_wrong_shape():
    inputs = scan_inputs(10, 2, 3, 4)
    inputs["B"] = inputs["B"][:, :, :9]
    with pytest.raises(ValueError, match=r"B has shape \(2, 4, 9\), expected \(2, 4, 10\)"):
        selective_scan_triton(**inputs)


def test_cpu_scan_never_calls_the_triton_scan(monkeypatch):
    calls = []
    monkeypatch.setattr(mamba, "triton_scan", lambda *args: calls.append(args))
    inputs = random_inputs(50, batch=2, d_inner=3, d_state=16)
    with torch.no_grad():
        y = selective_scan(**inputs)
    trained = selective_scan(**{k: v.requires_grad_() for k, v in inputs.items()})
    assert calls == [] and torch.allclose(y, trained, atol=1e-5)


@gpu
@pytest.mark.parametrize(
    "case",
    [
        dict(length=1724, batch=64, d_inner=24, d_state=16),  # the first encoder layer, 10 s
        dict(length=300, batch=4, d_inner=192, d_state=16, chunk=128),
        dict(length=300, batch=4, d_inner=48, d_state=16, block_d=8, num_warps=8),
        dict(length=77, batch=3, d_inner=10, d_state=12, block_d=8, softplus=False),
        dict(length=1, batch=2, d_inner=3, d_state=4),
        dict(length=200, batch=2, d_inner=5, d_state=16, delta_scale=15.0, chunk=32),
    ],
)
def test_cuda_kernels_match_reference(case):
    errors = scan_errors("cuda", **case)
    assert max(errors.values()) < TOLERANCE, errors


@gpu
def test_cuda_scan_under_bf16_autocast_matches_float32():
    inputs = {k: v.cuda() for k, v in scan_inputs(700, 4, 24, 16).items()}
    grads = {}
    for amp in (False, True):
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            # under autocast the activations come from linear layers in bf16, the parameters
            # A, D and the bias stay float32
            args = {
                k: v.to(torch.bfloat16) if amp and k in "u delta B C z" else v
                for k, v in leaves.items()
            }
            out = selective_scan_triton(**args, delta_softplus=True)
        assert out.dtype == (torch.bfloat16 if amp else torch.float32)
        out.float().square().mean().backward()
        grads[amp] = {"out": out.float(), **{k: v.grad for k, v in leaves.items()}}
    for key, want in grads[False].items():
        assert relative_error(grads[True][key], want) < 3e-2, key


@gpu
def test_cuda_training_and_inference_use_the_triton_scan(monkeypatch):
    calls = []
    real = mamba.triton_scan
    monkeypatch.setattr(mamba, "triton_scan", lambda *args: calls.append(1) or real(*args))
    inputs = random_inputs(120, batch=2, d_inner=3, d_state=16)
    with torch.no_grad():
        fast = selective_scan(**{k: v.cuda() for k, v in inputs.items()})
    trained = {k: v.cuda().requires_grad_() for k, v in inputs.items()}
    out = selective_scan(**trained)
    out.sum().backward()
    assert calls == [1, 1]
    cpu = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    want = selective_scan(**cpu)  # the PyTorch block scan
    want.sum().backward()
    assert relative_error(fast.cpu(), want) < TOLERANCE
    for key in inputs:
        assert relative_error(trained[key].grad.cpu(), cpu[key].grad) < TOLERANCE, key


@gpu
@pytest.mark.skipif(not fused_kernels_available(), reason="needs mamba-ssm")
def test_cuda_scan_equals_mamba_ssm():
    inputs = {k: v.cuda() for k, v in scan_inputs(1000, 4, 48, 16).items()}
    outputs = {}
    for name, scan in (("triton", selective_scan_triton), ("mamba_ssm", mamba.selective_scan_fn)):
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        out = scan(**leaves, delta_softplus=True)
        out.square().mean().backward()
        outputs[name] = {"out": out, **{k: v.grad for k, v in leaves.items()}}
    for key, want in outputs["mamba_ssm"].items():
        assert relative_error(outputs["triton"][key], want) < 1e-4, key


@gpu
def test_generator_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    model = make_generator("aeromamba").eval()
    lr = torch.from_numpy(music(11025)).float().view(1, 1, -1)
    with torch.inference_mode():
        cpu = model(lr)
        gpu = model.cuda()(lr.cuda()).cpu()
    assert (gpu - cpu).abs().max() < 1e-3 * cpu.abs().max()
