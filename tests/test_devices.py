"""CPU thread settings: container quotas are honoured, explicit counts are applied."""

from __future__ import annotations

import pytest
import torch

from aeromamba import devices


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("line", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000", 2), ("5000 100000", 1)],
)
def test_quota_cpus_reads_cgroup_v2_cpu_max(line: str, cpus: int | None) -> None:
    assert devices.quota_cpus(line) == cpus


def test_available_cpus_is_capped_by_the_quota(tmp_path, monkeypatch) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    monkeypatch.setattr(devices, "CGROUP_CPU_MAX", cpu_max)
    assert devices.available_cpus() == 1
    cpu_max.write_text("max 100000\n")
    assert devices.available_cpus() >= 1
    monkeypatch.setattr(devices, "CGROUP_CPU_MAX", tmp_path / "missing")
    assert devices.available_cpus() >= 1


def test_set_cpu_threads(restore_threads, tmp_path, monkeypatch) -> None:
    assert devices.set_cpu_threads(1) == 1
    assert torch.get_num_threads() == 1
    torch.set_num_threads(4)
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("200000 100000\n")
    monkeypatch.setattr(devices, "CGROUP_CPU_MAX", cpu_max)
    assert devices.set_cpu_threads(None) == torch.get_num_threads() <= 2
    for bad in (0, -2, "two", 1.5):
        with pytest.raises(ValueError, match="threads"):
            devices.set_cpu_threads(bad)
