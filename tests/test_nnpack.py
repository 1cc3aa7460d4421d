"""The NNPACK 3×3 convolution against `F.conv2d`, when it is used, and its use in the decoder."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
import torch.nn.functional as F
from script_loader import load_script

from aeromamba.models.aero import DecoderLayer
from aeromamba.ops import conv, nnpack
from aeromamba.ops.nnpack import nnpack_conv3x3, use_nnpack

needs_nnpack = pytest.mark.skipif(
    not torch.backends.nnpack.is_available(), reason="PyTorch built without NNPACK"
)


def _assert_matches(out: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to F(6×6, 3×3)'s float32 rounding, which grows with the channels summed."""
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < 5e-5 * expected.abs().max()


@needs_nnpack
@pytest.mark.parametrize(
    "shape",
    [(1, 6, 8, 40), (3, 5, 4, 17), (2, 4, 7, 9), (1, 3, 1, 1), (1, 130, 3, 50)],
    ids=["even", "batch-3", "odd-both", "one-pixel", "wide"],
)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_direct_convolution(shape, bias):
    torch.manual_seed(0)
    x = torch.randn(shape)
    weight = torch.randn(7, shape[1], 3, 3)
    b = torch.randn(7) if bias else None
    with torch.inference_mode():
        out = nnpack_conv3x3(x, weight, b)
    assert out.is_contiguous()
    _assert_matches(out, F.conv2d(x, weight, b, padding=1))


def test_falls_back_to_the_direct_convolution_when_nnpack_refuses(monkeypatch, caplog):
    def refuse(*_):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", refuse)
    nnpack._warn_once.cache_clear()
    torch.manual_seed(1)
    x, weight, b = torch.randn(2, 3, 5, 6), torch.randn(4, 3, 3, 3), torch.randn(4)
    with torch.inference_mode(), caplog.at_level(logging.WARNING, "aeromamba.nnpack"):
        out = nnpack_conv3x3(x, weight, b)
        again = nnpack_conv3x3(x[:1], weight, b)  # the same failure: no second warning
    assert torch.equal(out, F.conv2d(x, weight, b, padding=1))
    assert torch.equal(again, F.conv2d(x[:1], weight, b, padding=1))
    warnings = [r.getMessage() for r in caplog.records if r.name == "aeromamba.nnpack"]
    assert len(warnings) == 1 and "NNPACK failed (NNPACK SpatialConvolution" in warnings[0]


@needs_nnpack
def test_used_only_for_cpu_float32_inference_of_3x3_kernels():
    x, weight = torch.zeros(1, 4, 2, 2), torch.zeros(5, 4, 3, 3)
    with torch.no_grad():
        assert use_nnpack(x, weight)
        assert not use_nnpack(x, weight[..., :1, :1])  # a 1×1 kernel
        assert not use_nnpack(x.double(), weight.double())
        with torch.backends.nnpack.flags(enabled=False):  # PyTorch's own switch
            assert not use_nnpack(x, weight)
        assert use_nnpack(x, weight)
    assert not use_nnpack(x, weight)  # gradients enabled: training


def _decoder(chin: int) -> DecoderLayer:
    torch.manual_seed(2)
    return DecoderLayer(chin, 8, 8, 4, True, 4, 1, last=False).eval()


@needs_nnpack
@pytest.mark.parametrize("deepest", [False, True], ids=["with-x", "x-is-zeros"])
def test_decoder_layer_uses_it_and_matches_the_direct_path(monkeypatch, deepest):
    layer = _decoder(24)
    skip = torch.randn(1, 12, 4, 23)
    x = None if deepest else torch.randn(1, 12, 4, 23)
    calls = []
    monkeypatch.setattr(conv, "nnpack_conv3x3", lambda *a: calls.append(a) or nnpack_conv3x3(*a))
    with torch.inference_mode():
        fast = layer(x, skip)
    assert len(calls) == 1
    with torch.inference_mode(), torch.backends.nnpack.flags(enabled=False):
        direct = layer(x, skip)
    assert len(calls) == 1
    torch.testing.assert_close(fast, direct, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # after an optimiser step the new weights are used
        layer.rewrite.weight.mul_(-0.5)
        layer.rewrite.bias.add_(1.0)
        moved = layer(x, skip)
    with torch.no_grad(), torch.backends.nnpack.flags(enabled=False):
        torch.testing.assert_close(moved, layer(x, skip), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(moved, fast, atol=1e-2)


@needs_nnpack
def test_benchmark_script_reports_every_shape(monkeypatch, capsys):
    script = load_script("scripts/benchmarks/conv3x3.py")
    monkeypatch.setattr(sys, "argv", ["conv3x3.py", "--seconds", "0.1", "--repeats", "1"])
    script.main()
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line[:3].startswith("| ") and line[2:3].isdigit()
    ]
    assert len(rows) == len(script.SHAPES)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[1]) >= 0 and float(cells[2]) >= 0
        assert float(cells[5]) < 5e-5  # the error relative to the output's scale
