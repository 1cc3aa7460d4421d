"""The Winograd 3×3 convolution against `F.conv2d`, and its use in the decoder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import aeromamba.models.aero as aero
import aeromamba.models.winograd as winograd
from aeromamba.models.aero import DecoderLayer
from aeromamba.models.winograd import use_winograd, winograd_conv3x3, winograd_weight


def _assert_matches(out: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to F(4×4, 3×3)'s float32 rounding, which grows with the channels summed."""
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < 5e-5 * expected.abs().max()


@pytest.mark.parametrize(
    "shape",
    [(1, 6, 8, 40), (3, 5, 4, 17), (2, 4, 7, 9), (1, 3, 1, 1), (2, 2, 3, 2)],
    ids=["even", "odd-width", "odd-both", "one-pixel", "odd-rows"],
)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_direct_convolution(shape, bias):
    torch.manual_seed(0)
    x = torch.randn(shape)
    weight = torch.randn(7, shape[1], 3, 3)
    b = torch.randn(7) if bias else None
    expected = F.conv2d(x, weight, b, padding=1)
    out = winograd_conv3x3(x, winograd_weight(weight, b))
    assert out.is_contiguous()
    _assert_matches(out, expected)


def test_blocks_of_tiles_give_the_same_result(monkeypatch):
    torch.manual_seed(1)
    x = torch.randn(2, 8, 6, 101)
    weight, b = torch.randn(5, 8, 3, 3), torch.randn(5)
    whole = winograd_conv3x3(x, winograd_weight(weight, b))
    monkeypatch.setattr(winograd, "_BLOCK_ENTRIES", 36 * 5 * 2 * 2 * 7)  # blocks of 7 tiles
    blocked = winograd_conv3x3(x, winograd_weight(weight, b))
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)
    expected = F.conv2d(x, weight, b, padding=1)
    _assert_matches(blocked, expected)


def test_used_only_for_cpu_float32_inference_on_wide_inputs():
    wide = torch.zeros(1, winograd.MIN_CHANNELS, 2, 2)
    with torch.no_grad():
        assert use_winograd(wide, wide.shape[1])
        assert not use_winograd(wide, winograd.MIN_CHANNELS - 1)
        assert not use_winograd(wide.double(), wide.shape[1])
    assert not use_winograd(wide, wide.shape[1])  # gradients enabled: training


def _decoder(chin: int) -> DecoderLayer:
    torch.manual_seed(2)
    return DecoderLayer(chin, 8, 8, 4, True, 4, 1, last=False).eval()


@pytest.mark.parametrize("deepest", [False, True], ids=["with-x", "x-is-zeros"])
def test_decoder_layer_matches_direct_path_and_follows_weight_updates(monkeypatch, deepest):
    chin = winograd.MIN_CHANNELS
    layer = _decoder(2 * chin)
    skip = torch.randn(1, chin, 4, 23)
    x = None if deepest else torch.randn(1, chin, 4, 23)

    def direct() -> torch.Tensor:
        with monkeypatch.context() as m, torch.no_grad():
            m.setattr(aero, "use_winograd", lambda *_: False)
            return layer(x, skip)

    # rounding only: a stale transformed weight would be off by the update's size, O(1)
    close = dict(rtol=1e-4, atol=1e-4)
    for _ in range(2):  # the second pass reuses the transformed weights
        with torch.inference_mode():
            fast = layer(x, skip)
        torch.testing.assert_close(fast, direct(), **close)
    assert layer._winograd_cache is not None

    with torch.no_grad():  # an optimiser step changes the weights in place
        layer.rewrite.weight.mul_(-0.5)
        layer.rewrite.bias.add_(1.0)
    with torch.no_grad():
        fast = layer(x, skip)
    torch.testing.assert_close(fast, direct(), **close)


def test_decoder_layer_made_in_inference_mode_still_runs():
    with torch.inference_mode():
        layer = _decoder(2 * winograd.MIN_CHANNELS)
        x = torch.randn(1, 2 * winograd.MIN_CHANNELS, 4, 9)
        fast = layer._rewrite(x, layer.rewrite.weight)
        expected = F.conv2d(x, layer.rewrite.weight, layer.rewrite.bias, padding=1)
    _assert_matches(fast, expected)


def test_benchmark_script_reports_every_shape(monkeypatch, capsys):
    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_winograd.py"
    spec = importlib.util.spec_from_file_location("benchmark_winograd", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(
        sys, "argv", ["benchmark_winograd.py", "--seconds", "0.1", "--repeats", "1"]
    )
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
