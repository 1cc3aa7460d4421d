"""CPU settings: container quotas are honoured, explicit thread counts are applied, and the
entry points' allocator choice is made."""

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


@pytest.mark.parametrize("keep_freed", [True, False])
def test_configure_cpu_sets_threads_and_the_allocator(restore_threads, monkeypatch, keep_freed):
    calls = []
    monkeypatch.setattr(devices, "keep_freed_memory", lambda: calls.append("keep") or True)
    assert devices.configure_cpu(1, keep_freed) == 1
    assert torch.get_num_threads() == 1
    assert calls == (["keep"] if keep_freed else [])
    with pytest.raises(ValueError, match="threads"):
        devices.configure_cpu(0, False)
