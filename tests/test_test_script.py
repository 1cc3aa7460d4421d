"""test.py end to end: per kind of music (the corpus's groups), the low-resolution baseline, the
network's whole band and predict.py's default output are scored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from aeromamba.data import music_clip, prepare_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_test_py_reports_each_kind_and_both_outputs(tmp_path: Path):
    raw = tmp_path / "raw"
    for kind, seed in (("piano", 1), ("produced", 2)):
        for split in ("train", "valid", "test"):
            (raw / split / kind).mkdir(parents=True)
            sf.write(raw / split / kind / f"{kind}{seed}.wav", music_clip(3.0, 44100, seed), 44100)
    prepare_corpus(raw, tmp_path / "prepared", workers=1, progress=False)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "test.py"),
            "dset=folder",
            f"dset.root={tmp_path / 'prepared'}",
            "metrics=[lsd,lsd_hf]",
            "dset.test_segment=2",
            "device=cpu",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    by_group = json.loads((out / "summary_by_group.json").read_text())
    assert sorted(by_group) == ["piano", "produced"]
    for group in by_group.values():
        assert list(group) == ["low resolution", "model, network", "model, predict"]
        # predict keeps the input's low band: its full-band LSD is below the network's
        assert group["model, predict"]["lsd"]["mean"] < group["model, network"]["lsd"]["mean"]
        assert group["model, predict"]["lsd"]["n"] == 1  # one 2 s excerpt every 40 s
        assert group["model, predict"]["level_8_12"]["n"] == 1  # the generated band's level
    assert "### piano" in result.stdout and "### produced" in result.stdout
    assert result.stdout.count("| level 8–12 kHz (dB) |") == 3  # overall and per kind


def test_test_py_refuses_an_unknown_output(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "test.py"), "outputs=[nonsense]", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2 and "error: outputs=['nonsense']" in result.stderr
