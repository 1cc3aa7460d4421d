"""A training checkpoint's generator as a model file for predict.py, test.py and the package.

    python scripts/export_model.py RUN/checkpoint.pt OUT.pt [--weights average|last|best]
        [--band-cap DB] [--stage TEXT] [--overwrite]

`--weights`: the moving average of the weights at the run's last step (`ema_decay` > 0), the
raw weights at that step, or the best entry (what `best.pt` holds). The file keeps the run's
config; its metadata records the epoch, step and weights, the post-processing that predict's
defaults take from it (`--band-cap`, dB; none by default, see `InferenceOptions`) and a free
`--stage` note. Written atomically; an existing OUT is replaced only with `--overwrite`, and
never when it is the input. The written file is loaded back before the command returns.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aeromamba.checkpoint import load_checkpoint, save_checkpoint
from aeromamba.cli import entry_point
from aeromamba.errors import UsageError
from aeromamba.options import load_model

WEIGHTS = ("average", "last", "best")


def generator_state(package: dict[str, Any], weights: str, source: Path) -> dict[str, Any]:
    """The generator's state dict of `weights` in a training checkpoint package."""
    if weights == "average":
        if "ema" not in package:
            raise UsageError(f"{source}: no moving average (the run had ema_decay 0)")
        return package["ema"]
    if weights == "best":
        best = package.get("best") or {}
        if "generator" not in best:
            raise UsageError(f"{source}: no best entry yet (no validation has run)")
        return best["generator"]
    return package["generator"]["state"]


def export(
    source: Path,
    dest: Path,
    weights: str = "average",
    band_cap: float | None = None,
    stage: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the model file `dest` from the training checkpoint `source`; returns its metadata."""
    if weights not in WEIGHTS:
        raise UsageError(f"--weights {weights}: choose one of {', '.join(WEIGHTS)}")
    if dest.exists() and (not overwrite or dest.resolve() == source.resolve()):
        why = "it is the input" if dest.resolve() == source.resolve() else "use --overwrite"
        raise UsageError(f"{dest} exists; not replaced ({why})")
    package = load_checkpoint(source)
    if "step" not in package:
        raise UsageError(f"{source}: not a training checkpoint (no step; a model file already?)")
    metadata: dict[str, Any] = {
        "epoch": package["epoch"],
        "step": package["step"],
        "weights": weights,
    }
    if band_cap is not None:
        metadata["band_cap"] = float(band_cap)
    if stage:
        metadata["stage"] = stage
    state = generator_state(package, weights, source)
    save_checkpoint(
        dest,
        {
            "generator": {"kwargs": package["generator"]["kwargs"], "state": state},
            "config": package.get("config", {}),
            "metadata": metadata,
        },
    )
    load_model(dest)  # the file reads back as a model
    return metadata


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a training run's checkpoint.pt")
    parser.add_argument("output", type=Path)
    parser.add_argument("--weights", choices=WEIGHTS, default="average")
    parser.add_argument("--band-cap", type=float, default=None, help="dB (default: none)")
    parser.add_argument("--stage", default=None, help="a note kept in the metadata")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    metadata = export(
        args.checkpoint, args.output, args.weights, args.band_cap, args.stage, args.overwrite
    )
    print(f"{args.output}: {metadata}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
