"""Tests of scripts/build_music_corpus.py: its pure helpers always, a tiny real build when
fluidsynth, a General MIDI SoundFont and music21 are installed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_music_corpus.py"


def _load():
    spec = importlib.util.spec_from_file_location("build_music_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


bmc = _load()


def test_drums_follow_the_metre():
    tpq = bmc.TPQ
    bars = [bmc.Bar(i * 3 * tpq, 3 * tpq, 0, 3, 4) for i in range(4)]  # four bars of 3/4
    bars += [bmc.Bar(12 * tpq + i * 3 * tpq, 3 * tpq, 0, 6, 8) for i in range(4)]  # 6/8
    style = bmc.DrumStyle(0, False, False, 0.8, 4, 4, False, False)
    notes = bmc.drum_notes(bars, style, bmc.rng_for("test"))
    kicks = {n.start for n in notes if n.pitch == bmc.KICK}
    hats = [n for n in notes if n.pitch in (bmc.CLOSED_HAT, bmc.OPEN_HAT)]
    assert all(b.start in kicks for b in bars), "a kick on every downbeat"
    assert any(n.pitch in (bmc.CRASH, bmc.CRASH2, bmc.SPLASH) for n in notes)
    # eighth-note hats: 6 per 3/4 bar and 6 per 6/8 bar, fewer only in fill beats
    assert 30 <= len(hats) <= 48
    assert all(1 <= n.velocity <= 127 for n in notes)
    assert all(n.start < 24 * tpq for n in notes)


def test_tempo_map_round_trip():
    tempos = [(0, 500_000), (4 * bmc.TPQ, 1_000_000)]  # 120 qpm, then 60 qpm
    assert bmc.tick_to_seconds(4 * bmc.TPQ, tempos) == pytest.approx(2.0)
    assert bmc.tick_to_seconds(6 * bmc.TPQ, tempos) == pytest.approx(4.0)
    for seconds in (0.5, 2.0, 3.7):
        tick = bmc.seconds_to_tick(seconds, tempos)
        assert bmc.tick_to_seconds(tick, tempos) == pytest.approx(seconds, abs=1e-4)


def test_midi_file_is_well_formed(tmp_path):
    music = bmc.Music(
        tracks=[
            bmc.Track(
                "melody", [bmc.Note(0, bmc.TPQ, 60, 90), bmc.Note(bmc.TPQ, 2 * bmc.TPQ, 62, 80)]
            ),
            bmc.Track("drums", [bmc.Note(0, bmc.TPQ // 8, bmc.KICK, 100)], drum=True),
        ],
        tempos=[(0, 500_000)],
        bars=[],
        tempo_marked=True,
        key_tonic=0,
        key_minor=False,
        title="",
        composer="",
        rights="",
    )
    path = tmp_path / "t.mid"
    bmc.write_midi(path, music)
    data = path.read_bytes()
    assert data[:4] == b"MThd" and data.count(b"MTrk") == 3
    assert int.from_bytes(data[12:14], "big") == bmc.TPQ
    assert bytes([0x99, bmc.KICK, 100]) in data, "drums on channel 10"
    assert bytes([0x90, 60, 90]) in data


def test_finish_audio_trims_cuts_and_normalises():
    sr = bmc.SR
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * sr) / sr)
    audio = np.concatenate([np.zeros(sr), tone, np.zeros(2 * sr)])[None, :].repeat(2, axis=0)
    out = bmc.finish_audio(audio.astype(np.float32), max_seconds=10.0, peak_db=-6.0)
    assert out.shape == (2, 10 * sr)
    assert 20 * np.log10(np.abs(out).max()) == pytest.approx(-6.0, abs=0.01)
    assert np.abs(out[:, : sr // 10]).max() > 0.1, "leading silence trimmed"
    assert np.abs(out[:, -10:]).max() < 0.01, "faded out at the cut"
    with pytest.raises(bmc.PieceError):
        bmc.finish_audio(np.zeros((2, sr), np.float32), 10.0, -6.0)


def test_missing_tools_name_the_install_commands(monkeypatch):
    monkeypatch.setattr(bmc.shutil, "which", lambda name: None)
    with pytest.raises(bmc.SetupError, match="apt-get install .*fluidsynth fluid-soundfont-gm"):
        bmc.check_requirements()


def _needs_renderer():
    pytest.importorskip("music21", reason="music21 not installed (pip install -e '.[corpus]')")
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (apt-get install -y fluidsynth)")
    if bmc.find_soundfont() is None:
        pytest.skip("no GM SoundFont (apt-get install -y fluid-soundfont-gm)")


def _build(out: Path) -> None:
    options = "--minutes 0.3 --workers 1 --max-seconds-per-piece 8 --synthetic-minutes 0 --seed 3"
    command = [sys.executable, str(SCRIPT), str(out), *options.split()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.glob("*/*.wav"))
    }


@pytest.mark.slow
def test_tiny_build_is_complete_and_reproducible(tmp_path):
    _needs_renderer()
    out = tmp_path / "corpus"
    _build(out)
    sources = json.loads((out / "sources.json").read_text())
    listed = {entry["file"] for entry in sources["files"]}
    wavs = _digests(out)
    assert set(wavs) == listed
    for split in ("train", "valid", "test"):
        files = sorted((out / split).glob("*.wav"))
        assert files, f"no {split} files"
        for path in files:
            audio, sr = sf.read(str(path))
            assert sr == 44100
            assert 2.0 <= len(audio) / sr <= 8.0 + 1e-6
            assert np.abs(audio).max() > 10 ** (-13 / 20), f"{path.name} is (nearly) silent"
            assert path.name in (out / "SOURCES.md").read_text()
    for entry in sources["files"]:
        if entry["split"] == "train":
            assert not any(p["heldout"] for p in entry["programs"]), "held-out sound in training"
    # The same seed gives the same files; a rerun in place reuses them.
    again = tmp_path / "again"
    _build(again)
    assert _digests(again) == wavs
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/*.wav")}
    _build(out)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.wav")} == mtimes
