"""DistributedDataParallel searches for unused parameters only for the variant that builds
modules it never calls (`aeromamba_official`: Mamba constructed, not executed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from aeromamba.models import make_discriminator, make_generator
from aeromamba.training.distributed import World
from aeromamba.training.solver import Solver, TrainConfig


@contextmanager
def one_process_group(folder: Path) -> Iterator[None]:
    """A gloo process group of this process alone, for wrapping models in DDP on the CPU."""
    dist.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("variant", "unused"), [("aero", False), ("aeromamba", False), ("aeromamba_official", True)]
)
def test_unused_parameters_are_searched_only_where_modules_go_unused(variant, unused, tmp_path):
    torch.manual_seed(0)
    with one_process_group(tmp_path):
        solver = Solver(
            make_generator(variant, channels=8),
            make_discriminator(ndf=4, max_channels=32),
            [],
            None,
            TrainConfig(epochs=1, batch_size=2),
            tmp_path / "run",
            torch.device("cpu"),
            World(rank=0, size=2),  # distributed as the Solver sees it; the group holds one
            {},
            logger=None,
        )
        assert solver.g_model.find_unused_parameters is unused
        for _ in range(2):  # DDP refuses a second backward if a parameter went without gradient
            solver.g_model(torch.randn(1, 1, 2048)).square().mean().backward()
