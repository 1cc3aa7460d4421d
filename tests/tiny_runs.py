"""Tiny training runs for the tests: the command line of `train.py` on a small corpus."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = (
    "dset=folder",
    "experiment=aeromamba",
    "experiment.aero.channels=8",
    "experiment.segment=1",
    "experiment.batch_size=2",
    "experiment.discriminator.ndf=4",  # every scale and layer, 0.1 M parameters instead of 17 M
    "experiment.discriminator.max_channels=64",
    "device=cpu",
    "wandb.mode=disabled",
    "num_workers=0",
)


def train_argv(
    corpus: Path | str, run: Path, *extra: str, prefix: tuple[str, ...] = ()
) -> list[str]:
    """`python [prefix...] train.py` of a tiny run on the prepared `corpus` into `run`;
    `extra` overrides follow (each key once: Hydra refuses a key given twice)."""
    return [
        sys.executable,
        *prefix,
        str(ROOT / "train.py"),
        *TINY,
        f"dset.root={corpus}",
        f"hydra.run.dir={run}",
        *extra,
    ]
