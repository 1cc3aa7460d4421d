"""Evaluation: statistics, failure accounting and the end-to-end folder evaluation with all
its outputs (CSV, JSON, Markdown, HTML)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from aeromamba.audio import resample, write_audio
from aeromamba.data.synthetic import music_clip
from aeromamba.evaluation import (
    ItemResult,
    failed_item,
    pairwise_tests,
    summarize,
)
from aeromamba.metrics.lsd import lsd

ROOT = Path(__file__).resolve().parents[1]


def test_summary_mean_ci_and_failures_are_not_averaged():
    results = [ItemResult("a", f"x{i}", {"lsd": v}) for i, v in enumerate([1.0, 2.0, 4.0])]
    results.append(failed_item("a", "x3", "missing", ["lsd"]))
    summary = summarize(results, ["lsd"])["a"]["lsd"]
    assert summary["n"] == 3 and summary["failed"] == 1
    assert summary["mean"] == pytest.approx(7 / 3)
    half_width = stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert summary["ci95"] == pytest.approx(half_width)


def test_pairwise_mann_whitney():
    results = [ItemResult("a", str(i), {"lsd": float(i)}) for i in range(8)]
    results += [ItemResult("b", str(i), {"lsd": float(i) + 10}) for i in range(8)]
    tests = pairwise_tests(results, ["lsd"])
    expected = stats.mannwhitneyu(range(8), [i + 10 for i in range(8)]).pvalue
    assert tests["lsd"]["a vs b"] == pytest.approx(expected)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """reference (44.1 kHz), lowres (11.025 kHz), an estimate folder with one file missing
    and one at the wrong rate."""
    root = tmp_path_factory.mktemp("eval")
    for i in range(3):
        hr = music_clip(3.0, 44100, seed=i)[None]
        write_audio(root / "ref" / "songs" / f"s{i}.wav", hr, 44100)
        write_audio(root / "low" / "songs" / f"s{i}.wav", resample(hr, 44100, 11025), 11025)
        if i == 0:
            write_audio(root / "est" / "songs" / "s0.wav", 0.5 * hr, 44100)
        if i == 1:
            write_audio(root / "est" / "songs" / "s1.wav", resample(hr, 44100, 22050), 22050)
    return root


def test_evaluate_script_end_to_end(folders, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            "--reference",
            str(folders / "ref"),
            "--lowres",
            str(folders / "low"),
            "--estimate",
            f"half={folders / 'est'}",
            "--metrics",
            "lsd,lsd_hf,lsd_lf,paqm",
            "--out",
            str(out),
            "--report",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # the estimate folder has failures
    for name in ("summary.json", "per_item.csv", "summary.md", "report.html"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"low resolution", "half"}
    assert summary["half"]["lsd"] == {
        "mean": pytest.approx(summary["half"]["lsd"]["mean"]),
        "ci95": None,
        "n": 1,
        "failed": 2,
    }
    # the baseline row equals LSD computed directly on the soxr-upsampled input
    direct = []
    for i in range(3):
        hr = music_clip(3.0, 44100, seed=i).astype(np.float32)
        up = resample(resample(hr[None], 44100, 11025), 11025, 44100)[0]
        n = min(len(hr), len(up))
        direct.append(float(lsd(up[:n], hr[:n])))
    assert summary["low resolution"]["lsd"]["mean"] == pytest.approx(np.mean(direct), rel=1e-3)
    assert summary["low resolution"]["lsd"]["n"] == 3
    assert summary["low resolution"]["lsd_hf"]["mean"] > summary["low resolution"]["lsd_lf"]["mean"]
    # a 0.5 gain is 2·log10(2) in every bin, up to the 1e-8 power floor
    assert 0.3 < summary["half"]["lsd"]["mean"] <= 0.603
    markdown = (out / "summary.md").read_text()
    assert "missing in" in markdown and "22050 Hz" in markdown
    page = (out / "report.html").read_text()
    assert page.count("<audio") == 3 * 3 - 2  # reference + low + est where present
    assert f"<td>{summary['half']['lsd']['mean']:.3f}" in page, "the page shows the summary"
    assert (out / "spectrograms" / "songs" / "s0.png").stat().st_size > 1000


def test_excerpts_of_several_groups_are_reported_per_group(tmp_path):
    from aeromamba.evaluation import evaluate_excerpts

    excerpts, groups, perfect = [], {}, {}
    for i, group in enumerate(["piano", "piano", "produced", "produced"]):
        hr = music_clip(1.0, 44100, seed=i)
        lr = resample(hr[None], 44100, 11025)[0]
        excerpts.append((f"item{i}", lr, hr))
        groups[f"item{i}"] = group
        if group == "piano":
            perfect[lr.tobytes()] = hr
    # a system that is perfect on piano and plain resampling on produced music
    systems = {"half": lambda lr: perfect.get(lr.tobytes(), resample(lr[None], 11025, 44100)[0])}
    evaluate_excerpts(excerpts, systems, tmp_path, ["lsd"], groups=groups)
    by_group = json.loads((tmp_path / "summary_by_group.json").read_text())
    assert sorted(by_group) == ["piano", "produced"]
    assert by_group["piano"]["half"]["lsd"]["n"] == 2
    assert by_group["piano"]["half"]["lsd"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert by_group["produced"]["half"]["lsd"]["mean"] > 1.0
    overall = json.loads((tmp_path / "summary.json").read_text())
    assert overall["half"]["lsd"]["n"] == 4
    markdown = (tmp_path / "summary.md").read_text()
    assert "### piano" in markdown and "### produced" in markdown
    rows = (tmp_path / "per_item.csv").read_text().splitlines()
    assert rows[0].startswith("system,item,group,") and ",piano," in rows[1]


def _brighter(hr: np.ndarray, db: float = 6.0) -> np.ndarray:
    """hr with every rfft bin above 8 kHz raised by `db`."""
    spectrum = np.fft.rfft(hr)
    spectrum[np.fft.rfftfreq(len(hr), 1 / 44100) > 8000] *= 10 ** (db / 20)
    return np.fft.irfft(spectrum, n=len(hr))


def test_band_level_per_kind_in_tables_and_report(tmp_path):
    from aeromamba.evaluation import evaluate_excerpts

    excerpts, groups, bright = [], {}, {}
    for i, group in enumerate(["piano", "piano", "produced", "produced"]):
        hr = music_clip(1.0, 44100, seed=i).astype(np.float64)
        lr = resample(hr[None], 44100, 11025)[0]
        excerpts.append((f"item{i}", lr, hr))
        groups[f"item{i}"] = group
        bright[lr.tobytes()] = _brighter(hr)
    systems = {"bright": lambda lr: bright[lr.tobytes()]}
    evaluate_excerpts(excerpts, systems, tmp_path, ["lsd"], report=True, groups=groups)
    by_group = json.loads((tmp_path / "summary_by_group.json").read_text())
    for group in ("piano", "produced"):
        row = by_group[group]["bright"]
        assert row["level_5_8"]["mean"] == pytest.approx(0.0, abs=0.1)
        assert row["level_8_12"]["mean"] == pytest.approx(6.0, abs=0.1)
        assert row["level_8_12"]["n"] == 2 and row["level_8_12"]["ci95"] is not None
        assert row["spread_8_12"]["mean"] == pytest.approx(1.0, abs=0.02)
        # the baseline has no generated band: far too dull
        assert by_group[group]["low resolution"]["level_8_12"]["mean"] < -20
    header = (tmp_path / "per_item.csv").read_text().splitlines()[0]
    assert header.startswith("system,item,group,lsd,level_5_8,level_8_12,")
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.count("| level 8–12 kHz (dB) |") == 3  # overall and per kind
    assert "| spread 8–12 kHz |" in markdown
    level = by_group["piano"]["bright"]["level_8_12"]
    assert f"{level['mean']:.2f} ± {level['ci95']:.2f}" in markdown
    page = (tmp_path / "report.html").read_text()
    assert "<th>level 8–12 kHz (dB)</th>" in page
    for name in ("all_items", "piano", "produced"):
        assert f'<img src="band_level/{name}.png"' in page
        assert (tmp_path / "band_level" / f"{name}.png").stat().st_size > 1000


def test_a_silent_reference_band_is_left_out_not_failed(tmp_path):
    from aeromamba.evaluation import evaluate_excerpts

    hr = np.zeros(44100)
    lr = np.zeros(11025)
    evaluation = evaluate_excerpts(
        [("silence", lr, hr)], {"same": lambda lr: np.zeros(44100)}, tmp_path, ["lsd"]
    )
    assert not evaluation.failures
    entry = evaluation.summary["same"]["level_8_12"]
    assert entry["n"] == 0 and entry["failed"] == 0 and entry["mean"] is None
    assert evaluation.summary["same"]["lsd"]["n"] == 1
