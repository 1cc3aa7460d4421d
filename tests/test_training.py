"""Training end to end on a small synthetic corpus: losses go down, runs resume after being
killed, truncated checkpoints are refused, and 2-process DDP (gloo) writes a loadable model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tiny_runs import train_argv

from aeromamba.checkpoint import load_checkpoint, load_generator

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here trains in subprocesses (CI runs them)


@pytest.fixture
def corpus(tiny_corpus: Path) -> Path:
    return tiny_corpus


def command(corpus: Path, run: Path, *extra: str) -> list[str]:
    return train_argv(corpus, run, "max_valid_items=4", "dset.min_dbfs=-60", *extra)


def history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def test_training_reduces_losses(corpus, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        command(corpus, run, "epochs=3", "max_steps_per_epoch=8"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    entries = history(run)
    assert [e["epoch"] for e in entries] == [1, 2, 3]
    assert entries[-1]["train"]["mrstft"] < entries[0]["train"]["mrstft"]
    assert entries[-1]["valid"]["lsd"] < entries[0]["valid"]["lsd"]
    for entry in entries:
        assert 0 < entry["cpu_seconds"], "CPU time is recorded (for the CPU hours of a model)"
        for key in ("adversarial", "features", "discriminator", "grad_norm_g", "grad_norm_d"):
            assert torch.isfinite(torch.tensor(entry["train"][key])), key
    best = load_generator(run / "best.pt")
    assert best(torch.randn(1, 1, 2000)).shape == (1, 1, 8000)
    recorded = OmegaConf.load(run / ".hydra" / "config.yaml")  # the run's own record
    assert recorded.epochs == 3 and "epochs=3" in OmegaConf.load(run / ".hydra" / "overrides.yaml")


def test_killed_run_resumes_from_next_epoch(corpus, tmp_path):
    run = tmp_path / "run"
    argv = command(corpus, run, "epochs=4", "max_steps_per_epoch=3", "adversarial=false")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (run / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (run / "checkpoint.pt").exists(), "no checkpoint was written"
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = load_checkpoint(run / "checkpoint.pt")
    done = saved["epoch"]
    assert done >= 1
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"after epoch {done}" in result.stdout + result.stderr
    assert [e["epoch"] for e in history(run)] == [1, 2, 3, 4]
    # the resumed run started from exactly the saved weights
    from aeromamba.models import Aero, MultiScaleDiscriminator
    from aeromamba.training.distributed import World
    from aeromamba.training.solver import Solver, TrainConfig

    resume_dir = tmp_path / "again"
    resume_dir.mkdir()
    (resume_dir / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    final = load_checkpoint(resume_dir / "checkpoint.pt")
    solver = Solver(
        Aero(**final["generator"]["kwargs"]),
        MultiScaleDiscriminator(**final["discriminator"]["kwargs"]),
        [],
        None,
        TrainConfig(epochs=5, batch_size=2),
        resume_dir,
        torch.device("cpu"),
        World(),
        {},
        logger=None,
    )
    assert solver.epoch == 4
    for key, value in final["generator"]["state"].items():
        assert torch.equal(solver.generator.state_dict()[key], value), key
    assert solver.opt_g.state_dict()["state"]  # Adam moments came back too


def test_truncated_checkpoint_is_refused(corpus, tmp_path):
    run = tmp_path / "run"
    argv = command(corpus, run, "epochs=1", "max_steps_per_epoch=1", "adversarial=false")
    assert subprocess.run(argv, capture_output=True, check=False).returncode == 0
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    result = subprocess.run(
        command(corpus, run, "epochs=2", "max_steps_per_epoch=1"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "truncated or corrupt" in output and "restart=true" in output
    assert (run / "checkpoint.pt").stat().st_size == len(data) // 3  # left for inspection


def test_ddp_two_processes_gloo(corpus, tmp_path):
    run = tmp_path / "run"
    argv = command(corpus, run, "epochs=1", "max_steps_per_epoch=2")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            *argv[1:],
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout + result.stderr
    package = load_checkpoint(run / "checkpoint.pt")
    assert package["epoch"] == 1 and package["step"] == 2
    model = load_generator(run / "checkpoint.pt")
    assert model(torch.randn(1, 1, 1000)).shape == (1, 1, 4000)
