"""runtime: provider choice and the CPU count that sizes ONNX Runtime's thread pool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.dataplane.runtime import CPU, resolve_providers, usable_cpus
from service.errors import StartupError


def test_cpu_providers() -> None:
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers("auto")[-1] == CPU


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="a GPU is present"
)
def test_cuda_is_refused_without_it() -> None:
    with pytest.raises(StartupError, match="onnxruntime-gpu"):
        resolve_providers("cuda")
    assert resolve_providers("auto") == [CPU]


def test_usable_cpus_follows_affinity(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cpu_max", "expected"), [("50000 100000", 1), ("150000 100000", 2), ("max 100000", None)])
def test_usable_cpus_respects_a_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (min(expected, affinity) if expected else affinity)


def test_usable_cpus_respects_a_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1
