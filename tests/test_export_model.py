"""scripts/export_model.py: a training checkpoint's chosen weights as a model file."""

from __future__ import annotations

import pytest
import torch

from aeromamba.checkpoint import model_package, save_checkpoint
from aeromamba.errors import UsageError
from aeromamba.models import make_generator
from aeromamba.options import InferenceOptions, load_model
from tests.script_loader import load_script

export_model = load_script("scripts/export_model.py")


@pytest.fixture
def run_checkpoint(tmp_path):
    """A training checkpoint whose last, averaged and best weights all differ."""
    torch.manual_seed(0)
    generator = make_generator(channels=8)
    states = {
        name: {
            k: v + offset if v.is_floating_point() else v for k, v in generator.state_dict().items()
        }
        for name, offset in (("last", 0.0), ("average", 0.01), ("best", 0.02))
    }
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path,
        {
            "generator": {**model_package(generator), "state": states["last"]},
            "epoch": 7,
            "step": 700,
            "history": [],
            "best": {"generator": states["best"], "metric": "lsd_hf", "value": 1.5},
            "ema": states["average"],
            "config": {"lr": 1e-4},
            "metadata": {},
        },
    )
    return path, states


@pytest.mark.parametrize("weights", ["last", "average", "best"])
def test_each_kind_of_weights_is_written_and_loads(tmp_path, run_checkpoint, weights):
    source, states = run_checkpoint
    out = tmp_path / f"{weights}.pt"
    metadata = export_model.export(source, out, weights, stage="stage 5")
    assert metadata == {"epoch": 7, "step": 700, "weights": weights, "stage": "stage 5"}
    model = load_model(out)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, states[weights][key], msg=key)
    assert InferenceOptions.for_model(model).band_cap is None, "no cap unless asked"


def test_band_cap_goes_to_predicts_defaults(tmp_path, run_checkpoint):
    out = tmp_path / "capped.pt"
    assert export_model.main([str(run_checkpoint[0]), str(out), "--band-cap", "0"]) == 0
    assert InferenceOptions.for_model(load_model(out)).band_cap == 0.0


def test_nothing_is_replaced_without_asking_and_a_model_file_is_not_a_run(tmp_path, run_checkpoint):
    source = run_checkpoint[0]
    out = tmp_path / "model.pt"
    export_model.export(source, out)
    before = out.read_bytes()
    with pytest.raises(UsageError, match="exists; not replaced"):
        export_model.export(source, out, "last")
    assert out.read_bytes() == before
    with pytest.raises(UsageError, match="it is the input"):
        export_model.export(source, source, overwrite=True)
    with pytest.raises(UsageError, match="not a training checkpoint"):
        export_model.export(out, tmp_path / "again.pt")
    export_model.export(source, out, "last", overwrite=True)
    assert out.read_bytes() != before
