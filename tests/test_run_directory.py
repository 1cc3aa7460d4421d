"""A run directory is one training's: a second process is refused while the first holds it,
a run that starts afresh sets the previous run's best.pt and history aside instead of
replacing them, a corrupt checkpoint names the way to keep the learned weights, and resuming
on another corpus says so."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import train_argv

from aeromamba.checkpoint import CheckpointError, load_checkpoint, model_package, save_checkpoint
from aeromamba.models import Aero, MultiScaleDiscriminator
from aeromamba.training.distributed import RunDirectoryBusy, World, hold_run_directory
from aeromamba.training.solver import Solver, TrainConfig

SMALL = {"channels": 8}


def _solver(run_dir: Path, full_config: dict | None = None, **settings) -> Solver:
    torch.manual_seed(0)
    return Solver(
        Aero(**SMALL),
        MultiScaleDiscriminator(ndf=4, max_channels=16),
        [],
        None,
        TrainConfig(epochs=1, batch_size=1, **settings),
        run_dir,
        torch.device("cpu"),
        World(),
        full_config or {},
        logger=None,
    )


def _previous_run(run_dir: Path, config: dict | None = None) -> dict[str, bytes]:
    """checkpoint.pt, best.pt (weights of its own) and history.json of an earlier run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    generator = Aero(**SMALL)
    save_checkpoint(
        run_dir / "checkpoint.pt",
        {
            "generator": model_package(generator),
            "discriminator": model_package(MultiScaleDiscriminator(ndf=4, max_channels=16)),
            "epoch": 3,
            "step": 30,
            "history": [{"epoch": 3}],
            "config": config or {},
        },
    )
    save_checkpoint(run_dir / "best.pt", {"generator": model_package(generator)})
    (run_dir / "history.json").write_text('[{"epoch": 3}]')
    names = ("checkpoint.pt", "best.pt", "history.json")
    return {name: (run_dir / name).read_bytes() for name in names}


def _set_aside(run_dir: Path, before: dict[str, bytes], caplog) -> Path:
    """The folder the previous run's files went to: named in the log, holding them all."""
    folders = [p for p in run_dir.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    folder = folders[0]
    assert re.fullmatch(r"previous_\d{8}-\d{6}(_\d+)?", folder.name), folder.name
    assert str(folder) in caplog.text
    assert {name: (folder / name).read_bytes() for name in before} == before
    return folder


def test_restart_sets_the_previous_best_and_history_aside(tmp_path: Path, caplog):
    before = _previous_run(tmp_path)
    with caplog.at_level(logging.INFO, "aeromamba.train"):
        solver = _solver(tmp_path, restart=True)
    assert solver.epoch == 0
    _set_aside(tmp_path, before, caplog)
    assert not any((tmp_path / name).exists() for name in before)


def test_a_fresh_start_beside_an_earlier_best_sets_it_aside(tmp_path: Path, caplog):
    before = _previous_run(tmp_path)
    (tmp_path / "checkpoint.pt").unlink()  # as a user told to remove a corrupt one would
    del before["checkpoint.pt"]
    with caplog.at_level(logging.INFO, "aeromamba.train"):
        _solver(tmp_path)
    _set_aside(tmp_path, before, caplog)


def test_two_restarts_in_one_second_keep_both(tmp_path: Path, caplog):
    _previous_run(tmp_path)
    with caplog.at_level(logging.INFO, "aeromamba.train"):
        _solver(tmp_path, restart=True)
        _previous_run(tmp_path)
        _solver(tmp_path, restart=True)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_a_corrupt_checkpoint_names_how_to_keep_the_learned_weights(tmp_path: Path, caplog):
    before = _previous_run(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(before["checkpoint.pt"][:1000])
    with pytest.raises(CheckpointError) as caught:
        _solver(tmp_path)
    message = str(caught.value)
    advice = f"restart=true continue_from={tmp_path / 'best.pt'}"
    assert "\n" not in message and advice in message
    # following the advice starts from best.pt's weights, and keeps the file
    with caplog.at_level(logging.INFO, "aeromamba.train"):
        solver = _solver(tmp_path, restart=True, continue_from=str(tmp_path / "best.pt"))
    folder = _set_aside(
        tmp_path, before | {"checkpoint.pt": before["checkpoint.pt"][:1000]}, caplog
    )
    best = load_checkpoint(folder / "best.pt")["generator"]["state"]
    for key, value in solver.generator.state_dict().items():
        assert torch.equal(value, best[key]), key


def test_resuming_on_another_corpus_says_so(tmp_path: Path, caplog):
    trained_on = {"dset": {"name": "musdb", "root": "/data/musdb", "train": "train"}}
    _previous_run(tmp_path, config=trained_on)
    now = {"dset": {"name": "folder", "root": "/data/mine", "train": "train"}}
    with caplog.at_level(logging.WARNING, "aeromamba.train"):
        solver = _solver(tmp_path, full_config=now)
    assert solver.epoch == 3
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "/data/musdb" in warning[0] and "/data/mine" in warning[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "aeromamba.train"):
        _solver(tmp_path, full_config=trained_on)
    assert not caplog.records


# --- one training per run directory --------------------------------------------------------


def test_a_held_run_directory_is_refused_naming_the_holder(tmp_path: Path):
    with hold_run_directory(tmp_path):
        with pytest.raises(RunDirectoryBusy) as caught:
            with hold_run_directory(tmp_path):
                pass
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message
    with hold_run_directory(tmp_path):  # released on exit
        pass


def test_the_hold_ends_with_a_killed_holder(tmp_path: Path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from aeromamba.training.distributed import hold_run_directory\n"
            "with hold_run_directory(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunDirectoryBusy, match=f"pid {holder.pid}"):
        with hold_run_directory(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with hold_run_directory(tmp_path):
        pass


@pytest.mark.slow
def test_a_second_training_on_a_held_run_directory_is_refused(tiny_corpus: Path, tmp_path: Path):
    run = tmp_path / "run"
    with hold_run_directory(run):
        record = run / ".hydra" / "config.yaml"
        record.parent.mkdir()
        record.write_text("the holder's record\n")
        result = subprocess.run(
            train_argv(tiny_corpus, run, "epochs=1", "max_steps_per_epoch=1"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0], output[-2000:]
    assert not (run / "checkpoint.pt").exists()
    assert record.read_text() == "the holder's record\n"  # the refused run leaves it alone
