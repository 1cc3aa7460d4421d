"""Fault injection: a training run killed (SIGKILL) three times, at random points of an epoch and
of a checkpoint write, then resumed, ends with the same weights as a run never interrupted, and
no file of its run directory is ever truncated."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import train_argv

from aeromamba.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# Runs train.py with torch.save slowed down (the bytes written in pieces, with pauses) and a
# marker file touched while a save is under way, so the test can kill inside a write.
SLOW_SAVE = textwrap.dedent(
    """
    import io, pathlib, runpy, sys, time
    import torch

    marker = pathlib.Path(sys.argv.pop(1))
    original = torch.save

    def slow_save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        original(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        marker.touch()
        out = f if hasattr(f, "write") else open(f, "wb")  # a file object or a path
        for start in range(0, len(data), len(data) // 8 + 1):
            out.write(data[start : start + len(data) // 8 + 1])
            out.flush()
            time.sleep(0.05)
        if out is not f:
            out.close()
        marker.unlink()

    torch.save = slow_save
    sys.argv[0] = sys.argv[1]
    del sys.argv[1]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


def _argv(wrapper: Path, marker: Path, corpus: Path, run: Path) -> list[str]:
    return train_argv(
        corpus,
        run,
        "max_valid_items=2",
        "epochs=4",
        "max_steps_per_epoch=3",
        prefix=(str(wrapper), str(marker)),
    )


def _assert_nothing_truncated(run: Path) -> None:
    """Every file of the run directory (temporaries aside) reads back whole."""
    for path in run.iterdir():
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix == ".pt":
            load_checkpoint(path)  # CheckpointError for a truncated file
        elif path.suffix == ".json":
            json.loads(path.read_text())


def _kill(argv: list[str], marker: Path, during_save: bool, rng: random.Random) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    if during_save:
        while not marker.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the run ended before saving"
        time.sleep(rng.uniform(0.0, 0.3))
    else:
        time.sleep(rng.uniform(3.0, 9.0))
    process.send_signal(signal.SIGKILL)
    process.wait()
    marker.unlink(missing_ok=True)


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    package = load_checkpoint(run / "checkpoint.pt")
    assert package["epoch"] == 4
    return package["generator"]["state"] | {
        f"D.{k}": v for k, v in package["discriminator"]["state"].items()
    }


@pytest.mark.slow
def test_killed_three_times_ends_like_an_uninterrupted_run(tiny_corpus: Path, tmp_path: Path):
    corpus = tiny_corpus
    wrapper = tmp_path / "slow_save.py"
    wrapper.write_text(SLOW_SAVE)
    marker = tmp_path / "saving"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "reference"
    done = subprocess.run(
        _argv(wrapper, marker, corpus, reference), capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "killed"
    argv = _argv(wrapper, marker, corpus, run)
    rng = random.Random(7)
    for during_save in (False, True, True):
        _kill(argv, marker, during_save, rng)
        _assert_nothing_truncated(run)
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_nothing_truncated(run)
    assert not list(run.glob(".*.tmp")), "temporaries of killed saves are cleaned"

    expected, got = _final_weights(reference), _final_weights(run)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    history = json.loads((run / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4]
