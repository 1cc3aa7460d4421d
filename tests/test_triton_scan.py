"""The Triton GPU inference scan equals the sequential reference, is used only on CUDA where
no gradient is wanted, and steps aside everywhere else.

Without a GPU the kernel is checked under Triton's interpreter (TRITON_INTERPRET=1, which runs
kernels on CPU tensors) when Triton is installed; the CUDA tests need a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec

import pytest
import torch
from test_mamba import random_inputs
from test_native_scan import core_inputs, reference_core

from aeromamba.models import make_generator, mamba
from aeromamba.models.mamba import selective_scan
from aeromamba.models.triton_scan import triton_scan, triton_scan_available
from tests.signals import music


def gpu(test):  # noqa: ANN001, ANN201
    """Marks a test that needs CUDA and Triton."""
    needs = pytest.mark.skipif(
        not (torch.cuda.is_available() and triton_scan_available()), reason="needs CUDA and Triton"
    )
    return pytest.mark.gpu(needs(test))


@pytest.mark.skipif(find_spec("triton") is None, reason="needs Triton (for its interpreter)")
@pytest.mark.skipif(
    torch.cuda.is_available(),
    reason="the CUDA tests check the compiled kernel (and Triton 3.6's interpreter cannot "
    "loop to a run-time bound under NumPy 2.5)",
)
def test_kernel_matches_reference_under_the_interpreter():
    # the interpreter is chosen when the kernel is defined, so it runs in a fresh process
    script = textwrap.dedent(
        """
        from test_native_scan import core_inputs, reference_core
        from aeromamba.models.triton_scan import launch_scan
        cases = [  # d_inner not a multiple of the block, d_state not a power of two
            dict(length=37, batch=3, d_inner=10, d_state=16, block_d=4),
            dict(length=20, batch=2, d_inner=5, d_state=12, block_d=8),
            dict(length=25, batch=1, d_inner=4, d_state=16, block_d=4, delta_scale=40.0),
        ]
        for case in cases:
            block_d = case.pop("block_d")
            inputs = core_inputs(**case)
            want = reference_core(*inputs)
            got = launch_scan(*inputs, block_d=block_d)
            error = (got - want).abs().max().item()
            assert error < 1e-5 * max(1.0, want.abs().max().item()), (case, error)
        print("ok", len(cases))
        """
    )
    path = os.pathsep.join(["tests", ".", os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", "3"]


def test_steps_aside_off_cuda_and_when_switched_off(monkeypatch):
    inputs = core_inputs(30, 2, 3, 16)
    assert triton_scan(*inputs) is None  # CPU tensors: the native or PyTorch scan's job
    monkeypatch.setenv("AEROMAMBA_TRITON_SCAN", "0")
    assert not triton_scan_available()


def test_cpu_inference_never_calls_the_triton_scan(monkeypatch):
    calls = []
    monkeypatch.setattr(mamba, "triton_scan", lambda *args: calls.append(args) or None)
    inputs = random_inputs(50, batch=2, d_inner=3, d_state=16)
    with torch.no_grad():
        y = selective_scan(**inputs)
    assert calls == [] and torch.isfinite(y).all()


@gpu
@pytest.mark.parametrize(
    ("batch", "d_inner", "length", "d_state"),
    [(64, 24, 1724, 16), (4, 192, 300, 16), (3, 10, 77, 12)],
)
def test_cuda_kernel_matches_reference(batch, d_inner, length, d_state):
    inputs = core_inputs(length, batch, d_inner, d_state)
    want = reference_core(*inputs)
    got = triton_scan(*(t.cuda() for t in inputs))
    assert got is not None and got.is_cuda
    assert (got.cpu() - want).abs().max() < 1e-5 * max(1.0, want.abs().max().item())


@gpu
def test_cuda_inference_uses_the_triton_scan_and_training_the_autograd_scan(monkeypatch):
    calls = []
    real = mamba.triton_scan
    monkeypatch.setattr(mamba, "triton_scan", lambda *args: calls.append(1) or real(*args))
    inputs = {k: v.cuda() for k, v in random_inputs(120, batch=2, d_inner=3, d_state=16).items()}
    with torch.no_grad():
        fast = selective_scan(**inputs)
    assert calls == [1]
    trained = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    slow = selective_scan(**trained)
    assert calls == [1]
    assert torch.allclose(fast, slow.detach(), atol=1e-5, rtol=1e-5)


@gpu
def test_generator_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    model = make_generator("aeromamba").eval()
    lr = torch.from_numpy(music(11025)).float().view(1, 1, -1)
    with torch.inference_mode():
        cpu = model(lr)
        gpu = model.cuda()(lr.cuda()).cpu()
    assert (gpu - cpu).abs().max() < 1e-3 * cpu.abs().max()
