"""Device selection shared by training, inference and evaluation."""

from __future__ import annotations

import torch


def select_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU; otherwise the named device (checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} asked for, but CUDA is not available")
    return device
