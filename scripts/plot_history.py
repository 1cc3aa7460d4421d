"""Plot a training run's history.json (losses and validation metrics) as a PNG.

python scripts/plot_history.py RUN/history.json [RUN2/history.json ...] OUT.png

Several histories are stages of one model (a run continued with `continue_from=`): they are
drawn one after the other on a common axis of optimiser steps, a dotted line between stages.
A stage whose steps go on from the previous one's (a run directory copied from it) keeps
them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from aeromamba.files import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", nargs="+", help="history.json of each stage, in order")
    parser.add_argument("out")
    args = parser.parse_args()
    history, offset, last, boundaries = [], 0, 0, []
    for path in args.history:
        stage = json.loads(Path(path).read_text())
        # a stage branched from the previous run's checkpoint counts on from that run's steps
        shift = offset - last if 0 < last < stage[0]["step"] else offset
        history += [{**entry, "step": entry["step"] + shift} for entry in stage]
        offset, last = history[-1]["step"], stage[-1]["step"]
        boundaries.append(offset)
    steps = [entry["step"] for entry in history]
    train_keys = [k for k in history[0]["train"] if not k.startswith("grad_norm")]
    valid_keys = [
        k for k in ("lsd", "lsd_hf", "lsd_lf", "paqm") if k in history[0].get("valid", {})
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for key in train_keys:
        left.plot(steps, [e["train"][key] for e in history], marker=".", label=key)
    left.set_title("training losses")
    for key in valid_keys:
        points = [(e["step"], e["valid"][key]) for e in history if "valid" in e]
        right.plot(*zip(*points, strict=True), marker=".", label=key)
    right.set_title("validation (lower is better)")
    for ax in (left, right):
        ax.set_xlabel("optimiser step")
        for boundary in boundaries[:-1]:
            ax.axvline(boundary, color="grey", linestyle=":")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
