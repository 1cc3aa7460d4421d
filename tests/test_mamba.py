"""The portable selective scan equals a plain sequential reference of the Mamba recurrence,
and the block's fused CUDA path (when present) equals the portable one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aeromamba.models.mamba import Mamba
from aeromamba.ops.scan import fused_kernels_available, selective_scan
from aeromamba.ops.scan_ref import selective_scan_ref


def random_inputs(length, batch=2, d_inner=3, d_state=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return dict(
        u=r(batch, d_inner, length),
        delta=r(batch, d_inner, length),
        A=-torch.rand(d_inner, d_state, generator=g) * 2 - 0.1,
        B=r(batch, d_state, length),
        C=r(batch, d_state, length),
        D=r(d_inner),
        z=r(batch, d_inner, length),
        delta_bias=r(d_inner) * 0.5,
    )


@pytest.mark.parametrize("length", [1, 7, 200, 1001])
@pytest.mark.parametrize("block", [1, 5, 16])
def test_scan_matches_sequential_reference(length, block):
    inputs = random_inputs(
        length, batch=2 if length < 1001 else 1, d_inner=3 if length < 1001 else 2
    )
    ours = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    y = selective_scan(**ours, block=block)
    y_ref = selective_scan_ref(**ref, delta_softplus=True)
    assert torch.allclose(y, y_ref, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    for key in inputs:
        assert torch.allclose(ours[key].grad, ref[key].grad, atol=1e-5, rtol=1e-4), key


def test_scan_computes_in_float32_and_returns_input_dtype():
    inputs = {k: v.double() for k, v in random_inputs(50).items()}
    y = selective_scan(**inputs)
    assert y.dtype == torch.float64
    y32 = selective_scan(**{k: v.float() for k, v in inputs.items()})
    assert torch.equal(y.float(), y32)


def test_mamba_block_shapes_and_init():
    block = Mamba(12)
    assert block.d_inner == 24 and block.dt_rank == 1
    assert torch.allclose(block.A_log[0].exp(), torch.arange(1, 17).float())
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-4 * 0.999 and dt.max() <= 0.1 * 1.001
    x = torch.randn(3, 50, 12)
    assert block(x).shape == x.shape


def test_mamba_is_causal():
    block = Mamba(8).eval()
    x = torch.randn(1, 40, 8)
    y = block(x)
    x2 = x.clone()
    x2[:, 30:] += 1.0
    y2 = block(x2)
    assert torch.allclose(y[:, :30], y2[:, :30], atol=1e-6)
    assert not torch.allclose(y[:, 30:], y2[:, 30:])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(not fused_kernels_available(), reason="needs mamba-ssm and causal-conv1d")
def test_fused_path_matches_portable_path():
    from aeromamba.models import make_generator

    torch.manual_seed(0)
    model = make_generator("aeromamba").eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 11025 * 4) * 0.1
    with torch.no_grad():
        cpu = model(x)
        gpu_model = make_generator("aeromamba").cuda().eval()
        gpu_model.load_state_dict(state)  # same state dict on both paths
        gpu = gpu_model(x.cuda()).cpu()
    assert (cpu - gpu).abs().max() < 1e-3
