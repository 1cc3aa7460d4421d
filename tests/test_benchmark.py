"""scripts/benchmarks: the shared timing helper; inference.py's real (short) case, rounds and
ratios."""

from __future__ import annotations

import sys

import pytest
import torch
from script_loader import load_script

benchmark = load_script("scripts/benchmarks/inference.py")
measure = load_script("scripts/benchmarks/_measure.py")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_run_case_times_a_forward_pass(one_thread) -> None:
    row = benchmark.run_case("aeromamba", 0.5, "cpu")
    assert row["variant"] == "aeromamba" and row["runs"] == len(row["times"]) == 1
    assert row["median_s"] == row["times"][0] > 0
    assert row["rtf"] == pytest.approx(0.5 / row["median_s"])
    assert row["peak_mb"] > 50  # a process holding torch and a model


def test_interleave_alternates_the_variants_and_reports_ratios(one_thread, monkeypatch) -> None:
    calls = []
    real = benchmark.make_runner

    def counting(variant, *args):
        run = real(variant, *args)
        return lambda: calls.append(variant) or run()

    monkeypatch.setattr(benchmark, "make_runner", counting)
    text = benchmark.interleaved(["aero", "aeromamba", "aeromamba_official"], 0.3, "cpu", "none", 2)
    assert calls == ["aero", "aeromamba", "aeromamba_official"] * 2
    assert text.startswith("- 0.3 s, cpu, 2 alternations: aero ")
    ratios = [line for line in text.splitlines() if line.startswith("  - ")]
    assert [line.split(" time ")[0] for line in ratios] == [
        "  - aero/aeromamba",
        "  - aeromamba/aeromamba_official",
    ]
    assert all(float(line.split(" time ")[1].rstrip("×")) > 0 for line in ratios)


def test_alternate_warms_up_then_takes_the_runs_in_turn() -> None:
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = measure.alternate(runs, rounds=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [len(record) for record in times.values()] == [3, 3]


class Clocks:
    """Stand-ins for `time.perf_counter` (wall) and `time.process_time` (CPU) that advance only
    when a test moves them, so the timings do not depend on the machine's load."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def perf_counter(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu


@pytest.fixture
def clocks(monkeypatch) -> Clocks:
    fake = Clocks()
    monkeypatch.setattr(measure, "time", fake)
    return fake


def test_timing_tells_wall_from_cpu_seconds(clocks) -> None:
    with measure.timing() as waited:
        clocks.wall += 0.125  # waiting: the wall clock runs, the CPU clock does not
    assert (waited.wall, waited.cpu) == (0.125, 0.0)
    with measure.timing() as worked:
        clocks.wall += 0.25
        clocks.cpu += 0.5  # two busy threads
    assert (worked.wall, worked.cpu) == (0.25, 0.5)


def test_median_ratio_pairs_the_rounds() -> None:
    assert measure.median_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 3.0]) == 2.0
    with pytest.raises(ValueError):
        measure.median_ratio([1.0, 2.0], [1.0])


def test_median_seconds_leaves_out_the_warm_up(clocks) -> None:
    delays = iter([0.25, 0.5, 0.125, 1.0])  # the warm-up call first

    def run() -> None:
        clocks.wall += next(delays)

    assert measure.median_seconds(run, 3) == 0.5


def case(variant: str, times: list[float], peak: float, seconds: float = 10.0) -> dict:
    info = {"variant": variant, "seconds": seconds, "device": "cpu", "amp": "none"}
    return benchmark.summarise(info, times, peak)


def test_rounds_pool_their_runs() -> None:
    merged = benchmark.merge([case("aero", [3.0, 9.0, 4.0], 100), case("aero", [1.0, 2.0], 300)])
    assert merged["runs"] == 5 and merged["median_s"] == 3.0
    assert merged["rtf"] == pytest.approx(10 / 3) and merged["peak_mb"] == 300
    failed = {"variant": "aero", "seconds": 10.0, "device": "cpu", "error": "over 1800 s"}
    assert benchmark.merge([case("aero", [1.0], 1), failed]) == failed


def test_table_reports_ratios_within_one_length() -> None:
    rows = [
        case("aero", [4.0], 1200),
        case("aeromamba", [2.0], 800),
        case("aeromamba_official", [1.6], 700),
        case("aero", [30.0], 5000, seconds=60.0),
        {"variant": "aeromamba", "seconds": 60.0, "device": "cpu", "error": "killed"},
    ]
    text = benchmark.table(rows, "cpu")
    assert "| aeromamba | 10 s | 2.000 | 5.0 | 800 |" in text
    assert "10 s: aero/aeromamba time 2.00×, memory 1.50×" in text
    assert "10 s: aeromamba/aeromamba_official time 1.25×" in text
    assert "| aeromamba | 60 s | failed: killed | | |" in text
    assert "60 s: aero/aeromamba" not in text  # no ratio against a failed case


def test_amp_the_cpu_would_emulate_is_refused_before_any_case(one_thread, monkeypatch, capsys):
    from aeromamba import enhance as enhance_module

    monkeypatch.setattr(enhance_module, "cpu_has_native", lambda amp: False)
    argv = ["inference.py", "--amp", "bf16", "--devices", "cpu", "--lengths", "4"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        benchmark.main()
    assert stop.value.code == 2
    assert "amp=bf16 needs a CPU with AVX512-BF16 or AMX" in capsys.readouterr().err
