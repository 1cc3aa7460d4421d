"""Console and Weights & Biases logging for training (rank 0 only)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("aeromamba.train")


class RunLogger:
    """Per-epoch summaries on the console; metrics to wandb unless its mode is `disabled`."""

    def __init__(self, mode: str, project: str, run_dir: Path, config: dict, enabled: bool):
        self.run = None
        if enabled and mode != "disabled":
            import wandb

            self.run = wandb.init(
                mode=mode,
                project=project,
                dir=str(run_dir),
                config=config,
                name=config.get("experiment", {}).get("name"),
                resume="allow",
            )

    def step(self, values: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def epoch(self, entry: dict[str, Any], step: int) -> None:
        train = " ".join(f"{k}={v:.4g}" for k, v in entry["train"].items())
        valid = " ".join(f"{k}={v:.4g}" for k, v in entry.get("valid", {}).items())
        ema = " ".join(f"{k}={v:.4g}" for k, v in entry.get("valid_ema", {}).items())
        log.info(
            "epoch %d (%.0f s) | %s | valid %s%s%s",
            entry["epoch"],
            entry["seconds"],
            train,
            valid or "-",
            f" | valid (moving average) {ema}" if ema else "",
            f" | best ({entry['best']} weights)" if entry.get("best") else "",
        )
        if self.run is not None:
            self.run.log(
                {
                    **{f"valid/{k}": v for k, v in entry.get("valid", {}).items()},
                    **{f"valid_ema/{k}": v for k, v in entry.get("valid_ema", {}).items()},
                    "epoch": entry["epoch"],
                },
                step=step,
            )

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
