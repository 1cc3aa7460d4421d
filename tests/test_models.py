"""The networks match the authors' release: parameter counts, state-dict keys and shapes,
golden outputs, and the generator's input/output contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aeromamba.models import VARIANTS, make_discriminator, make_generator
from aeromamba.summary import count_parameters
from tests.conftest import golden_input, golden_output, set_deterministic_weights

EXPECTED_PARAMETERS = {
    "aero": 19_432_958,
    "aeromamba": 18_550_510,
    "aeromamba_official": 20_964_190,
}


@pytest.fixture(scope="module")
def reference(fixtures):
    return json.loads((fixtures / "reference_models.json").read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_generator_parameter_count_and_state_dict(variant, reference):
    model = make_generator(variant)
    assert count_parameters(model) == EXPECTED_PARAMETERS[variant]
    assert count_parameters(model) == reference[variant]["parameters"]
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    theirs = {key: shape for key, shape, _ in reference[variant]["state_dict"]}
    assert ours == theirs


def test_discriminator_parameter_count_and_state_dict(reference):
    model = make_discriminator()
    assert count_parameters(model) == 16_924_086 == reference["melgan_msd"]["parameters"]
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    theirs = {key: shape for key, shape, _ in reference["melgan_msd"]["state_dict"]}
    assert ours == theirs


def test_discriminator_outputs_features_per_scale():
    model = make_discriminator(ndf=4, n_layers=2)
    outputs = model(torch.randn(2, 1, 4096))
    assert len(outputs) == 3
    for features in outputs:
        assert len(features) == 2 + 3  # layer_0, n_layers strided, layer_{n+1}, score
        assert features[-1].shape[:2] == (2, 1)
        assert all(torch.isfinite(f).all() for f in features)
    # each scale sees the waveform pooled by 2 once more
    assert outputs[1][0].shape[-1] == outputs[0][0].shape[-1] // 2


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_golden_output(variant, dtype):
    golden = golden_output(variant)
    model = make_generator(variant).to(dtype).eval()
    set_deterministic_weights(model)
    with torch.no_grad():
        out = model(golden_input().to(dtype)).squeeze().double().numpy()
    assert out.shape == golden.shape
    assert np.abs(out - golden).max() < 1e-4


def test_variants_differ_where_mamba_runs():
    a = golden_output("aeromamba")
    b = golden_output("aeromamba_official")
    assert np.abs(a - b).max() > 0.1  # the golden test above really separates them


@pytest.fixture(scope="module")
def small_models():
    return {v: make_generator(v, channels=8).eval() for v in VARIANTS}


@pytest.mark.parametrize("length", [1, 5, 63, 64, 65, 300, 1001, 4410])
def test_output_is_four_times_input(small_models, length):
    x = torch.randn(2, 1, length) * 0.1
    for model in small_models.values():
        with torch.no_grad():
            y = model(x)
        assert y.shape == (2, 1, 4 * length)
        assert torch.isfinite(y).all()


def test_long_input_uses_lstm_framing(small_models):
    # > 200 frames exercises the BiLSTM's overlapping frames in `aero`
    x = torch.randn(1, 1, 64 * 450) * 0.1
    with torch.no_grad():
        y = small_models["aero"](x)
    assert y.shape == (1, 1, 4 * x.shape[-1]) and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "bad",
    [torch.randn(1000), torch.randn(1, 1000), torch.randn(1, 2, 1000), torch.randn(1, 1, 0)],
)
def test_bad_shapes_are_refused(small_models, bad):
    with pytest.raises(ValueError, match=r"\(B, 1, L\)"):
        small_models["aeromamba"](bad)


def test_wrong_rate_is_refused(small_models):
    with pytest.raises(ValueError, match="11025 Hz"):
        small_models["aeromamba"](torch.randn(1, 1, 1000), sr=16000)


def test_integer_input_is_refused(small_models):
    with pytest.raises(ValueError, match="floating-point"):
        small_models["aeromamba"](torch.ones(1, 1, 1000, dtype=torch.int16))


def test_overrides_are_checked():
    with pytest.raises(TypeError, match="chanels"):
        make_generator("aeromamba", chanels=8)
    with pytest.raises(ValueError, match="unknown variant"):
        make_generator("aero_mamba")


def test_official_variant_never_runs_its_mamba(small_models):
    model = small_models["aeromamba_official"]
    calls = []
    hooks = [
        m.register_forward_hook(lambda *_: calls.append(1))
        for name, m in model.named_modules()
        if name.endswith("mamba")
    ]
    with torch.no_grad():
        model(torch.randn(1, 1, 2000))
    assert hooks and not calls
    for hook in hooks:
        hook.remove()


def test_gradients_reach_every_used_parameter():
    model = make_generator("aeromamba", channels=8).train()
    model(torch.randn(2, 1, 2048)).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_local_attention_query_chunks_change_nothing(monkeypatch):
    from aeromamba.models import layers

    torch.manual_seed(0)
    attention = layers.LocalAttention(8).double().eval()
    x = torch.randn(3, 8, 37, dtype=torch.float64)
    with torch.no_grad():
        whole = attention(x)
        monkeypatch.setattr(layers, "ATTENTION_BUDGET", 3 * 4 * 37 * 5)  # 5 queries a chunk
        chunked = attention(x)
        monkeypatch.setattr(layers, "ATTENTION_BUDGET", 1)  # one query a chunk
        single = attention(x)
    assert torch.allclose(whole, chunked, atol=1e-12) and torch.allclose(whole, single, atol=1e-12)
    assert not torch.allclose(whole, x)  # the attention did something


def test_decoder_transposed_convolution_in_frame_pieces_equals_whole(monkeypatch):
    from aeromamba.models import aero
    from aeromamba.ops import conv

    monkeypatch.setattr(conv, "FRAME_BLOCK", 16)
    torch.manual_seed(0)
    layer = aero.DecoderLayer(8, 4, 8, 4, True, 4, 1, last=False).eval()
    calls = []
    layer.conv_tr.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[-1]))
    x, skip = torch.randn(2, 4, 5, 70), torch.randn(2, 4, 5, 70)
    whole = layer(x, skip)  # gradients wanted: one call over all frames
    assert calls == [70]
    with torch.inference_mode(), torch.backends.nnpack.flags(enabled=False):  # same rewrite
        pieces = layer(x, skip)
    assert calls[1:] == [16, 16, 16, 16, 6]
    assert torch.allclose(pieces, whole, atol=1e-6)
