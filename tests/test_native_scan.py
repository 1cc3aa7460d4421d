"""The compiled CPU inference scan equals the sequential reference, is used where no gradient
is wanted, and falls back to the PyTorch scan wherever it cannot be built (its backward pass:
tests/test_scan_backward.py)."""

from __future__ import annotations

import logging

import pytest
import torch
from test_mamba import random_inputs

from aeromamba.models import make_generator
from aeromamba.ops import native_scan
from aeromamba.ops import scan as mamba
from aeromamba.ops.native_scan import native_scan_available
from aeromamba.ops.scan import selective_scan
from aeromamba.ops.scan_ref import selective_scan_ref

needs_native = pytest.mark.skipif(
    not native_scan_available(), reason="no C compiler to build the native scan"
)


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """A library cache of this test's own, built anew (the cached loader is reset after)."""
    monkeypatch.setenv("AEROMAMBA_CACHE", str(tmp_path))
    native_scan._library.cache_clear()
    yield tmp_path
    native_scan._library.cache_clear()


def core_inputs(length, batch, d_inner, d_state, seed=0, delta_scale=1.0):
    inputs = random_inputs(length, batch=batch, d_inner=d_inner, d_state=d_state, seed=seed)
    delta = torch.nn.functional.softplus(inputs["delta"]) * delta_scale
    return inputs["u"], delta, inputs["A"], inputs["B"], inputs["C"]


@needs_native
@pytest.mark.parametrize(
    "length,batch,d_inner,d_state",
    [(1, 1, 1, 16), (7, 2, 3, 4), (300, 3, 5, 16), (64, 2, 3, 20), (40, 1, 2, 33), (30, 2, 2, 64)],
)
def test_native_scan_matches_sequential_reference(length, batch, d_inner, d_state):
    u, delta, A, B, C = core_inputs(length, batch, d_inner, d_state)
    y = native_scan.native_scan(u, delta, A, B, C)
    assert y is not None and y.shape == u.shape and y.dtype == torch.float32
    expected = selective_scan_ref(u.double(), delta.double(), A.double(), B.double(), C.double())
    assert torch.allclose(y.double(), expected, atol=1e-5, rtol=1e-5)


@needs_native
@pytest.mark.parametrize("length", [1, 7, 8, 300])
def test_native_scan_with_gate_is_mambas_output(length):
    inputs = random_inputs(length, batch=2, d_inner=5, d_state=16, seed=3)
    inputs["z"][0, 0, :4] = torch.tensor([-200.0, -90.0, 90.0, 200.0])[:length]  # SiLU's tails
    delta = torch.nn.functional.softplus(inputs["delta"] + inputs["delta_bias"][:, None])
    y = native_scan.native_scan(
        inputs["u"], delta, inputs["A"], inputs["B"], inputs["C"], inputs["D"], inputs["z"]
    )
    expected = selective_scan_ref(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    assert y.shape == inputs["u"].shape and torch.isfinite(y).all()
    assert torch.allclose(y.double(), expected, atol=1e-5, rtol=1e-5)
    core = native_scan.native_scan(inputs["u"], delta, inputs["A"], inputs["B"], inputs["C"])
    assert not torch.allclose(core, y, atol=1e-3)  # the gate did something


@needs_native
def test_native_scan_refuses_a_gate_that_does_not_fit():
    u, delta, A, B, C = core_inputs(20, 2, 3, 16)
    with pytest.raises(ValueError, match="both D and z"):
        native_scan.native_scan(u, delta, A, B, C, torch.ones(3), None)
    with pytest.raises(ValueError, match="do not fit"):
        native_scan.native_scan(u, delta, A, B, C, torch.ones(3), u[:, :, :-1])
    with pytest.raises(ValueError, match="do not fit"):
        native_scan.native_scan(u, delta, A, B, C, torch.ones(4), u)


@needs_native
def test_native_scan_clamps_fast_decays_to_zero_like_the_reference():
    # Δ·A far below -80: the state forgets everything at once, nothing overflows or turns NaN
    u, delta, A, B, C = core_inputs(50, 2, 4, 16, delta_scale=200.0)
    y = native_scan.native_scan(u, delta, A, B, C)
    assert torch.isfinite(y).all()
    expected = selective_scan_ref(u.double(), delta.double(), A.double(), B.double(), C.double())
    assert torch.allclose(y.double(), expected, atol=1e-4, rtol=1e-5)


@needs_native
def test_native_scan_is_the_same_with_any_thread_count():
    u, delta, A, B, C = core_inputs(200, 3, 7, 16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native_scan.native_scan(u, delta, A, B, C)
        torch.set_num_threads(max(2, threads))
        many = native_scan.native_scan(u, delta, A, B, C)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


@needs_native
def test_inference_uses_the_inference_scan_and_training_the_autograd_one(monkeypatch):
    calls = []
    real = mamba.native_scan

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(mamba, "native_scan", spy)
    inputs = random_inputs(120, batch=2, d_inner=3, d_state=16)
    with torch.no_grad():
        fast = selective_scan(**inputs)
    assert len(calls) == 1
    trained = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    slow = selective_scan(**trained)
    assert len(calls) == 1  # a gradient is wanted: the compiled autograd scan ran
    slow.sum().backward()
    assert trained["u"].grad is not None
    assert torch.allclose(fast, slow.detach(), atol=1e-5, rtol=1e-5)


@needs_native
def test_generator_output_is_the_same_through_every_scan(monkeypatch):
    torch.manual_seed(0)
    model = make_generator("aeromamba").eval()
    t = torch.arange(2 * 11025) / 11025
    lr = (0.3 * torch.sin(2 * torch.pi * 440 * t) * torch.exp(-2 * t)).view(1, 1, -1)
    with torch.inference_mode():
        native = model(lr)
    with torch.enable_grad():
        autograd = model(lr.clone().requires_grad_()).detach()  # the compiled training scan
        monkeypatch.setattr(mamba, "native_scan_with_grad", lambda *args: None)
        blocked = model(lr.clone().requires_grad_()).detach()  # the PyTorch one
    # not bit for bit: inference runs other convolution kernels (NNPACK, pieces of frames)
    assert torch.allclose(native, autograd, atol=1e-6, rtol=1e-5)
    assert torch.allclose(native, blocked, atol=1e-5, rtol=1e-4)


def test_native_scan_declines_what_it_does_not_handle():
    u, delta, A, B, C = core_inputs(20, 1, 2, 16)
    assert (
        native_scan.native_scan(u.double(), delta.double(), A.double(), B.double(), C.double())
        is None
    )
    assert native_scan.native_scan(*core_inputs(20, 1, 2, 65)) is None


def test_switched_off_by_the_environment(monkeypatch, fresh_library):
    monkeypatch.setenv("AEROMAMBA_NATIVE_SCAN", "0")
    assert not native_scan_available()
    assert native_scan.native_scan(*core_inputs(20, 1, 2, 16)) is None
    assert not list(fresh_library.iterdir())  # nothing was built


def test_falls_back_when_the_compiler_fails(monkeypatch, fresh_library, caplog):
    monkeypatch.setattr(native_scan, "_compiler", lambda: "false")  # exits 1, builds nothing
    with caplog.at_level(logging.WARNING, logger="aeromamba.native_scan"):
        assert not native_scan_available()
    assert "could not build the native CPU scan" in caplog.text
    assert not list(fresh_library.iterdir())  # no half-written library left behind
    inputs = random_inputs(30, batch=1, d_inner=2, d_state=16)
    with torch.no_grad():
        y = selective_scan(**inputs)  # the PyTorch scan answers instead
    assert torch.allclose(
        y, selective_scan_ref(**inputs, delta_softplus=True), atol=1e-5, rtol=1e-5
    )


def test_falls_back_without_a_compiler(monkeypatch, fresh_library):
    monkeypatch.setattr(native_scan, "_compiler", lambda: None)
    assert native_scan.native_scan(*core_inputs(20, 1, 2, 16)) is None


@needs_native
def test_library_is_built_once_into_the_cache(fresh_library):
    assert native_scan_available()
    built = list(fresh_library.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    native_scan._library.cache_clear()
    assert native_scan_available()
    assert list(fresh_library.iterdir()) == built and built[0].stat().st_mtime_ns == stamp
