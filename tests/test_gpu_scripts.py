"""The GPU scripts: valid bash, and nothing written into git's own files (the wheels they
install from, `.whl/`, are ignored by the repository's .gitignore)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("gpu_*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_parses_and_leaves_git_metadata_alone(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert ".git/" not in script.read_text()


def test_wheel_folder_is_ignored() -> None:
    assert len(SCRIPTS) == 3
    assert "/.whl/" in (ROOT / ".gitignore").read_text().splitlines()
