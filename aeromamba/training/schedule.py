"""The learning rate as a function of the training step.

- `constant`: `lr` at every step.
- `cosine`: `lr` until `start`, then half a cosine down to `lr_min` over `period` steps, then
  `lr_min` (SGDR's annealing without restarts; Loshchilov & Hutter 2017).
- `restarts`: the same half cosine, begun again at `lr` every `period` steps from `start`.

The rate depends on the step alone, so a resumed run follows the schedule it left.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "restarts")


def learning_rate(
    step: int, lr: float, schedule: str, start: int = 0, period: int = 1, lr_min: float = 0.0
) -> float:
    """The rate for the optimiser step that follows `step` steps already taken."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule {schedule!r}: must be one of {', '.join(SCHEDULES)}")
    if schedule == "constant" or step < start:
        return lr
    progress = (step - start) / period
    if schedule == "restarts":
        progress %= 1.0
    elif progress >= 1.0:
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * progress))
