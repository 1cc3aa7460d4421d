"""train.py against what users do: the whole config is checked before any work, a run directory
that cannot be written or a checkpoint of other networks is one line, and so are a missing or
unusable corpus, a corpus smaller than a batch, a NaN loss and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from tiny_runs import train_argv

from aeromamba.checkpoint import CheckpointError, model_package, save_checkpoint
from aeromamba.files import HOST
from aeromamba.models import Aero, MultiScaleDiscriminator
from aeromamba.training.config import ConfigError, check_config
from aeromamba.training.distributed import World
from aeromamba.training.logging import RunLogger
from aeromamba.training.solver import NonFiniteLossError, Solver, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"channels": 8}


def _config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", list(overrides))


@pytest.mark.parametrize(
    "override, says",
    [
        ("valid_metric=foo", "valid_metric=foo: must be one of lsd, lsd_hf, paqm"),
        ("amp=fp8", "amp=fp8: must be one of none, bf16, fp16"),
        ("batch_size_mode=foo", "batch_size_mode=foo"),
        ("wandb.mode=foo", "wandb.mode=foo"),
        ("epochs=0", "epochs=0: must be a whole number >= 1"),
        ("lr=-1", "lr=-1"),
        ("lr_schedule=linear", "lr_schedule=linear: must be one of constant, cosine, restarts"),
        ("lr_period=0", "lr_period=0: must be a whole number >= 1"),
        ("lambda_envelope=-1", "lambda_envelope=-1: must be a number >= 0"),
        ("experiment.segment=0", "experiment.segment=0"),
        ("experiment.batch_size=0", "experiment.batch_size=0"),
        ("device=nonsense", "device=nonsense: not a device"),
        ("continue_from=/no/such.pt", "continue_from=/no/such.pt: no such file"),
        ("+dset.repeat.piano=0", "dset.repeat.piano=0: must be a whole number >= 1"),
    ],
)
def test_bad_settings_are_named(override: str, says: str):
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        check_config(_config(override))
    assert says in str(caught.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as caught:
        check_config(_config("valid_metric=foo", "amp=fp8", "epochs=0"))
    assert len(str(caught.value).splitlines()) == 4  # the heading and three problems


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(ConfigError, match="device=cuda: not available here"):
        check_config(_config("device=cuda"))


def test_the_default_config_is_valid(tmp_path: Path):
    check_config(_config(), tmp_path / "run")
    assert not any((tmp_path / "run").iterdir()), "the write probe is removed"


def test_unwritable_run_directory_fails_before_any_work(tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot be written"):
        check_config(_config(), blocker / "run")


def _solver(run_dir: Path, generator: Aero, continue_from: str | None = None) -> Solver:
    return Solver(
        generator,
        MultiScaleDiscriminator(),
        [],
        None,
        TrainConfig(epochs=1, batch_size=1, continue_from=continue_from),
        run_dir,
        torch.device("cpu"),
        World(),
        {},
        logger=None,
    )


def test_resuming_other_networks_is_one_line(tmp_path: Path):
    saved = Aero(**SMALL)
    save_checkpoint(
        tmp_path / "checkpoint.pt",
        {
            "generator": model_package(saved),
            "discriminator": model_package(MultiScaleDiscriminator()),
            "epoch": 1,
            "step": 1,
            "history": [],
        },
    )
    with pytest.raises(CheckpointError) as caught:
        _solver(tmp_path, Aero(channels=12))
    message = str(caught.value)
    assert "\n" not in message and "channels 8 there, 12 here" in message
    assert "restart=true" in message
    (tmp_path / "other").mkdir()
    with pytest.raises(CheckpointError, match="channels 8 there, 12 here"):
        _solver(tmp_path / "other", Aero(channels=12), str(tmp_path / "checkpoint.pt"))
    resumed = _solver(tmp_path, Aero(**SMALL))  # the same networks resume
    assert resumed.epoch == 1


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path: Path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    stale = tmp_path / f".checkpoint.pt.{HOST}.{dead.stdout.strip()}.x1y2.tmp"
    stale.write_bytes(b"half")
    _solver(tmp_path, Aero(**SMALL))
    assert not stale.exists()


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def corpus(tiny_corpus: Path) -> Path:
    return tiny_corpus


def _train(root: Path | str, run: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = train_argv(root, run, "max_valid_items=2", "epochs=1", "max_steps_per_epoch=2", *extra)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-2000:]
    return output


@pytest.mark.slow
def test_bad_setting_fails_before_preparing_anything(tmp_path: Path):
    result = _train(tmp_path / "prepared", tmp_path / "run", "dset.source=x", "valid_metric=foo")
    assert "valid_metric=foo" in _one_line_error(result)
    assert not (tmp_path / "prepared").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty", "unpreparable"])
def test_missing_or_unusable_corpus_is_one_line(tmp_path: Path, case: str):
    root = tmp_path / "root"
    extra = []
    if case == "empty":
        root.mkdir()
    if case == "unpreparable":
        (tmp_path / "raw").mkdir()
        (tmp_path / "raw" / "broken.wav").write_text("not audio")
        extra = [f"dset.source={tmp_path / 'raw'}"]
    output = _one_line_error(_train(root, tmp_path / "run", *extra))
    assert str(root) in output


@pytest.mark.slow
def test_training_set_smaller_than_a_batch_is_one_line(corpus: Path, tmp_path: Path):
    output = _one_line_error(_train(corpus, tmp_path / "run", "experiment.batch_size=100000"))
    assert "fewer than one batch" in output


@pytest.mark.slow
def test_missing_file_under_a_prepared_root_is_one_line(corpus: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(corpus), str(copy)], check=True)
    victim = next((copy / "train" / "hr").glob("*.wav"))
    victim.unlink()
    output = _one_line_error(_train(copy, tmp_path / "run"))
    assert victim.name in output and "missing" in output


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_nan_in_a_training_file_names_the_file(corpus: Path, tmp_path: Path, workers: int):
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(corpus), str(copy)], check=True)
    for path in (copy / "train" / "hr").glob("*.wav"):
        audio, sr = sf.read(path, dtype="float32")
        audio[::100] = np.nan
        sf.write(path, audio, sr, subtype="FLOAT")
    overrides = ("dset.min_dbfs=null", f"num_workers={workers}")
    output = _one_line_error(_train(copy, tmp_path / "run", *overrides))
    error = next(line for line in output.splitlines() if line.startswith("error: "))
    assert "NaN or Inf samples" in error and str(copy / "train" / "hr") in error
    assert "lower lr" not in output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_nan_loss_names_no_checkpoint_that_does_not_exist(tmp_path: Path):
    solver = _solver(tmp_path, Aero(**SMALL))
    with pytest.raises(NonFiniteLossError) as caught:
        solver._check("generator", torch.tensor(float("nan")))
    message = str(caught.value)
    assert "loss is nan" in message and "none was written yet" in message


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_says_how_to_resume(corpus: Path, tmp_path: Path):
    run = tmp_path / "run"
    argv = train_argv(corpus, run, "max_valid_items=2", "epochs=1000", "max_steps_per_epoch=1")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not (run / "history.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    assert "Traceback" not in output
    assert "error: interrupted; the same command resumes from" in output
    assert json.loads((run / "history.json").read_text())


def test_a_new_selection_metric_starts_best_afresh(tmp_path: Path):
    torch.manual_seed(0)
    clip = (torch.randn(1, 2048) * 0.1, torch.randn(1, 8192) * 0.1)
    solver = Solver(
        Aero(**SMALL),
        MultiScaleDiscriminator(ndf=4, max_channels=16),
        [clip, clip],
        [clip],
        TrainConfig(epochs=1, batch_size=2, valid_metric="lsd_hf", num_workers=0),
        tmp_path,
        torch.device("cpu"),
        World(),
        {},
        RunLogger("disabled", "test", tmp_path, {}, True),
    )
    solver.best = {"metric": "lsd", "value": -1.0, "epoch": 0}  # unbeatable, but another metric
    history = solver.train()
    assert history[-1]["best"] and solver.best["metric"] == "lsd_hf"
    assert (tmp_path / "best.pt").is_file()


def test_the_campaign_recipe_composes_and_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)  # its continue_from is relative to the checkout
    cfg = _config("recipe=cpu_campaign")
    check_config(cfg)
    assert (cfg.dset.name, cfg.experiment.aero.channels, cfg.adversarial) == ("campaign", 16, False)
    assert cfg.valid_metric == "lsd_hf"
    gan = _config("recipe=cpu_campaign", "adversarial=true")  # the documented GAN schedule
    check_config(gan)
    assert gan.adversarial and gan.adversarial_start > 0 and gan.discriminator_warmup > 0
