"""`python train.py experiment=<variant> show=true` prints the networks and parameter counts
without touching data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"aero": 19_432_958, "aeromamba": 18_550_510, "aeromamba_official": 20_964_190}


@pytest.mark.parametrize("variant", sorted(COUNTS))
def test_show_prints_parameter_counts(variant, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"experiment={variant}",
            "show=true",
            "dset=folder",
            f"dset.root={tmp_path / 'does-not-exist'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"generator parameters: {COUNTS[variant]}" in lines
    assert "discriminator parameters: 16924086" in lines
    assert any("encoder" in line for line in lines)  # the structure summary
    assert not (tmp_path / "does-not-exist").exists()
