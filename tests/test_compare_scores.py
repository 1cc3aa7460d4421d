"""scripts/compare_scores.py: paired verdicts between two scorings of the same excerpts."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from aeromamba.errors import UsageError
from tests.script_loader import load_script

compare_scores = load_script("scripts/compare_scores.py")
FIELDS = ["system", "item", "group", "visqol", "lsd", "level_8_12", "spread_8_12"]


def write(path, rows):
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def table(rng, shift: dict[str, float]):
    rows = []
    for group in ("piano", "produced"):
        for i in range(12):
            rows.append(
                {
                    "system": "model, predict",
                    "item": f"{group}{i}",
                    "group": group,
                    "visqol": 3.0 + rng.normal(0, 0.3) + shift.get(f"{group}.visqol", 0),
                    "lsd": 1.5 + rng.normal(0, 0.1),
                    "level_8_12": -6.0 + rng.normal(0, 1) + shift.get(f"{group}.level", 0),
                    "spread_8_12": 0.7 + shift.get(f"{group}.spread", 0) + rng.normal(0, 0.02),
                }
            )
        rows.append({"system": "low resolution", "item": f"{group}0", "group": group})
    return rows


def test_verdicts_follow_each_metrics_direction(tmp_path, capsys):
    rng = np.random.default_rng(0)
    before = table(rng, {})
    after = [dict(r) for r in before]
    for r in after[:12]:  # piano: ViSQOL up a little on every item, spread toward 1
        r["visqol"] += 0.05
        r["spread_8_12"] += 0.2
    for r in after[13:25]:  # produced: level 4 dB up (toward 0), ViSQOL down on every item
        r["level_8_12"] += 4
        r["visqol"] -= 0.1
    a, b = write(tmp_path / "a.csv", before), write(tmp_path / "b.csv", after)
    rows = {
        (e["group"], e["metric"]): e
        for e in compare_scores.compare(
            compare_scores.read_scores(a, "model, predict"),
            compare_scores.read_scores(b, "model, predict"),
            ["visqol", "lsd", "level_8_12", "spread_8_12"],
        )
    }
    assert rows["piano", "visqol"]["verdict"] == "better"
    assert rows["piano", "spread_8_12"]["verdict"] == "better"
    assert rows["piano", "lsd"]["verdict"] == "same" and rows["piano", "lsd"]["change"] == 0
    assert rows["produced", "level_8_12"]["verdict"] == "better"
    assert rows["produced", "visqol"]["verdict"] == "worse"
    assert rows["produced", "visqol"]["change"] == pytest.approx(-0.1)
    assert rows["produced", "visqol"]["n"] == 12, "only the named system's rows"
    assert compare_scores.main([str(a), str(b)]) == 0
    assert "| produced | visqol | 12 |" in capsys.readouterr().out


def test_unrelated_or_unreadable_tables_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    a = write(tmp_path / "a.csv", table(rng, {}))
    other = [dict(r, item="x" + r["item"]) for r in table(rng, {})]
    b = write(tmp_path / "b.csv", other)
    with pytest.raises(UsageError, match="share no excerpt"):
        compare_scores.compare(
            compare_scores.read_scores(a, "model, predict"),
            compare_scores.read_scores(b, "model, predict"),
            ["visqol"],
        )
    with pytest.raises(UsageError, match="no row of system 'model, network'"):
        compare_scores.read_scores(a, "model, network")
    with pytest.raises(UsageError, match="missing.csv: not a per-item score table"):
        compare_scores.read_scores(tmp_path / "missing.csv", "model, predict")
