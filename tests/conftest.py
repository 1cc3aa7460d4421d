"""Shared test helpers: the reference fixtures folder and deterministic weights."""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RELEASE_FILES = ("checkpoint.th", "generator_best.th")

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # parallel workers share the cores between them
    torch.set_num_threads(
        max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    )


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The reference data (`tests/fixtures`, sources in its PROVENANCE.md)."""
    return FIXTURES


@pytest.fixture(scope="session")
def official_release(tmp_path_factory) -> Path:
    """A folder with the authors' release files, unpacked from `official_checkpoint/*.th.xz`."""
    folder = tmp_path_factory.mktemp("official_checkpoint")
    for name in RELEASE_FILES:
        with lzma.open(FIXTURES / "official_checkpoint" / f"{name}.xz") as packed:
            (folder / name).write_bytes(packed.read())
    return folder


def golden_output(name: str) -> np.ndarray:
    """One golden output of `golden_outputs.npz` (stored as float32), as float64."""
    with np.load(FIXTURES / "golden_outputs.npz") as golden:
        return golden[name].astype(np.float64)


def set_deterministic_weights(model: nn.Module) -> None:
    """The fixtures' weight rule: for the i-th key in sorted order, b[n] = sin(0.1(n+1) + 0.7i);
    vectors get 1 + 0.5b, larger tensors b / sqrt(numel of one slice); integers stay 0."""
    state = model.state_dict()
    new = {}
    for index, key in enumerate(sorted(state)):
        value = state[key]
        if not value.is_floating_point():
            new[key] = torch.zeros_like(value)
            continue
        n = torch.arange(value.numel(), dtype=torch.float64)
        b = torch.sin(0.1 * (n + 1) + 0.7 * index).reshape(value.shape)
        new[key] = 1 + 0.5 * b if value.dim() <= 1 else b / np.sqrt(value[0].numel())
    model.load_state_dict(new)


def golden_input() -> torch.Tensor:
    """The fixtures' input: 2 s of three sines at 11,025 Hz, (1, 1, 22050) float64."""
    n = np.arange(22050)
    x = (
        0.5 * np.sin(2 * np.pi * 440 * n / 11025)
        + 0.25 * np.sin(2 * np.pi * 1500 * n / 11025 + 0.3)
        + 0.1 * np.sin(2 * np.pi * 3100 * n / 11025)
    )
    return torch.from_numpy(x).view(1, 1, -1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """One minute of synthetic music, prepared (train/valid/test): the tiny runs' corpus."""
    from aeromamba.data import prepare_corpus, write_synthetic_corpus

    root = tmp_path_factory.mktemp("tiny_corpus")
    write_synthetic_corpus(root / "raw", 1.0, seed=1, workers=1, progress=False)
    prepare_corpus(root / "raw", root / "prepared", workers=1, progress=False)
    return root / "prepared"


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (its tests compare timings or run many small passes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
