"""Human-readable network summaries (`python train.py show=true`)."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def structure_summary(model: nn.Module, depth: int = 2) -> str:
    """One line per submodule down to `depth` levels: name, class and parameter count."""
    lines = [f"{type(model).__name__}: {count_parameters(model):,} parameters"]
    for name, module in model.named_modules():
        level = name.count(".") + 1
        if not name or level > depth:
            continue
        lines.append(
            f"{'  ' * level}{name}: {type(module).__name__} ({count_parameters(module):,})"
        )
    return "\n".join(lines)
