"""The compiled CPU training scan (`native_scan_with_grad`): its gradients equal the sequential
reference's (float64 autograd) and the blocked PyTorch scan's, across chunk boundaries and
state sizes, with any thread count; training on the CPU uses it, and falls back without it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aeromamba.ops import native_scan
from aeromamba.ops import scan as mamba
from aeromamba.ops.native_scan import CHUNK, native_scan_available, native_scan_with_grad
from aeromamba.ops.scan import block_scan, selective_scan
from aeromamba.ops.scan_ref import selective_scan_ref

pytestmark = pytest.mark.skipif(
    not native_scan_available(), reason="no C compiler to build the native scan"
)
NAMES = ("u", "delta", "A", "B", "C", "D", "z")


def gated_inputs(batch, d_inner, length, d_state, seed=0, delta_scale=1.0):
    """u, Δ (positive), A, B, C, D, z for the gated scan, float32."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return [
        r(batch, d_inner, length),
        F.softplus(r(batch, d_inner, length)) * delta_scale,
        -torch.rand(d_inner, d_state, generator=g) * 2 - 0.1,
        r(batch, d_state, length),
        r(batch, d_state, length),
        r(d_inner),
        r(batch, d_inner, length) * 2,
    ]


def gradients(scan, inputs, weights, dtype=torch.float32):
    leaves = [t.detach().to(dtype, copy=True).requires_grad_() for t in inputs]
    out = scan(*leaves)
    (out * weights.to(dtype)).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves]


def blocked(u, delta, A, B, C, D, z):
    """The PyTorch training scan of `mamba.selective_scan`'s fallback, gated the same way."""
    return (block_scan(u, delta, A, B, C) + u * D[:, None]) * F.silu(z)


def assert_close(ours, expected, name, rtol=1e-5):
    scale = expected.abs().max().item()
    assert torch.allclose(ours.double(), expected.double(), rtol=rtol, atol=rtol * scale), name


@pytest.mark.parametrize(
    "batch,d_inner,length,d_state",
    [
        (1, 1, 1, 16),
        (2, 3, CHUNK - 1, 16),
        (2, 3, CHUNK, 16),
        (3, 2, CHUNK + 1, 16),
        (2, 3, 2 * CHUNK + 7, 16),
        (2, 2, 90, 4),  # d_state padded to 16 lanes
        (2, 2, 70, 20),
        (1, 2, 40, 64),
    ],
)
def test_gradients_match_the_sequential_reference(batch, d_inner, length, d_state):
    inputs = gated_inputs(batch, d_inner, length, d_state)
    weights = torch.randn(batch, d_inner, length)
    out, grads = gradients(native_scan_with_grad, inputs, weights)
    ref_out, ref_grads = gradients(selective_scan_ref, inputs, weights, torch.float64)
    assert_close(out, ref_out, "output")
    for name, ours, expected in zip(NAMES, grads, ref_grads, strict=True):
        assert ours.shape == expected.shape and ours.dtype == torch.float32, name
        assert_close(ours, expected, name)
    _, block_grads = gradients(blocked, inputs, weights)
    for name, ours, other in zip(NAMES, grads, block_grads, strict=True):
        assert_close(ours, other, name)


def test_forward_is_the_inference_scan():
    inputs = gated_inputs(3, 4, 150, 16)
    with torch.no_grad():
        inference = native_scan.native_scan(*inputs)
    trained = native_scan_with_grad(*[t.clone().requires_grad_() for t in inputs])
    assert trained.requires_grad and torch.equal(trained.detach(), inference)


def test_same_gradients_with_any_thread_count():
    inputs = gated_inputs(5, 3, 2 * CHUNK + 5, 16)
    weights = torch.randn(5, 3, 2 * CHUNK + 5, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one = gradients(native_scan_with_grad, inputs, weights)
        torch.set_num_threads(max(3, threads))
        _, many = gradients(native_scan_with_grad, inputs, weights)
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(NAMES, one, many, strict=True):
        if name in ("A", "D"):  # sums of per-thread parts, added in another order: float32
            # rounding of the largest parts, not of each element, bounds the difference
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item()), name
        else:  # each element computed by one thread, as with one thread
            assert torch.equal(a, b), name


def test_fast_decays_and_gate_tails_give_finite_reference_gradients():
    # Δ·A far below -80 (the decay is clamped there) and SiLU far into both tails
    inputs = gated_inputs(2, 3, 80, 16, delta_scale=200.0)
    inputs[6][0, 0, :4] = torch.tensor([-200.0, -90.0, 90.0, 200.0])
    weights = torch.randn(2, 3, 80)
    _, grads = gradients(native_scan_with_grad, inputs, weights)
    _, ref_grads = gradients(selective_scan_ref, inputs, weights, torch.float64)
    for name, ours, expected in zip(NAMES, grads, ref_grads, strict=True):
        assert torch.isfinite(ours).all(), name
        assert_close(ours, expected, name, rtol=1e-4)


def test_cpu_training_runs_the_compiled_scan(monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return native_scan_with_grad(*args)

    monkeypatch.setattr(mamba, "native_scan_with_grad", spy)
    inputs = dict(zip(NAMES, gated_inputs(2, 3, 50, 16), strict=True))
    inputs["delta_bias"] = torch.randn(3) * 0.5
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    selective_scan(**leaves).sum().backward()
    assert calls == [(2, 3, 50)]
    assert all(leaf.grad is not None for leaf in leaves.values())
    with torch.no_grad():
        selective_scan(**inputs)
    assert len(calls) == 1  # inference runs the inference scan


def test_training_falls_back_to_the_blocked_scan(monkeypatch, tmp_path):
    inputs = gated_inputs(2, 3, 40, 16)
    weights = torch.randn(2, 3, 40)
    _, expected = gradients(native_scan_with_grad, inputs, weights)
    monkeypatch.setenv("AEROMAMBA_CACHE", str(tmp_path))
    monkeypatch.setenv("AEROMAMBA_NATIVE_SCAN", "0")
    native_scan._library.cache_clear()
    try:
        assert native_scan_with_grad(*inputs) is None
        bias = torch.zeros(3)
        through = lambda u, dl, A, B, C, D, z: selective_scan(  # noqa: E731
            u, torch.log(torch.expm1(dl)), A, B, C, D, z, bias
        )
        _, grads = gradients(through, inputs, weights)
    finally:
        native_scan._library.cache_clear()
    for name, ours, other in zip(NAMES, grads, expected, strict=True):
        assert_close(ours, other, name, rtol=1e-4)  # Δ's gradient passes through softplus⁻¹
    assert not list(tmp_path.iterdir())  # nothing was built


def test_declines_what_it_does_not_handle():
    inputs = gated_inputs(1, 2, 20, 16)
    assert native_scan_with_grad(*[t.double() for t in inputs]) is None
    with pytest.raises(ValueError, match="do not fit"):
        native_scan_with_grad(*inputs[:5], torch.ones(3), inputs[6])
