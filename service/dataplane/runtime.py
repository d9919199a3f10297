"""One ONNX Runtime session per model: provider choice, threads, warm-up and run(batch)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from service.errors import StartupError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may really use: its CPU affinity (taskset, cpusets) capped by a cgroup CPU quota
    (a container's CPU limit). ONNX Runtime's own default counts every core of the machine, which oversubscribes
    a pinned or limited process (measured: Lite0 pinned to one core fell from 45 to 26 images/s)."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_quota(root: Path) -> float | None:
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 else None
    except (OSError, ValueError):
        return None


def resolve_providers(choice: Literal["auto", "cpu", "cuda"]) -> list[str]:
    """The provider list for a session. Asking for CUDA where onnxruntime cannot use it is a start-up error,
    never a silent fall-back to the CPU."""
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in available:
            raise StartupError(
                f"CATDOG_PROVIDERS=cuda but this onnxruntime offers only {available}; "
                "install onnxruntime-gpu on a machine with an NVIDIA GPU, or set CATDOG_PROVIDERS=auto"
            )
        return [CUDA, CPU]
    return [CUDA, CPU] if CUDA in available else [CPU]


class OnnxModel:
    """A loaded ONNX graph. `run` is thread-safe (ONNX Runtime releases the GIL), so callers run it in threads."""

    def __init__(
        self,
        path: Path,
        *,
        input_name: str,
        output_name: str | None,
        providers: list[str],
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        exact_int8: bool = False,
    ) -> None:
        """`exact_int8`: ONNX Runtime computes INT8 dot products exactly on every CPU (for an INT8 file whose
        card says it is not exact on every CPU, served on one without VNNI: see ModelCard.resolve)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads or usable_cpus()
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep instead of spinning: with 2+ cores the decode pool runs beside inference
        # (docs/benchmarks.md), and spinning threads took its core (2 cores, large JPEGs: 22 vs 31-34 img/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if exact_int8:
            # AVX2's fast u8 x s8 kernel (vpmaddubsw) saturates 16-bit pair sums of full 8-bit weights; this entry
            # makes it sum exactly, as VNNI CPUs do and as the card's figures were measured (slower than the fast
            # kernels: on AVX2 about FP32's speed against their 1.40x, docs/benchmarks.md).
            options.add_session_config_entry("session.x64quantprecision", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.provider: str = self._session.get_providers()[0]
        if providers[0] == CUDA and self.provider != CUDA:
            raise StartupError(f"CUDA was requested but the session for {path.name} runs on {self.provider}")
        inputs = {i.name for i in self._session.get_inputs()}
        if input_name not in inputs:
            raise ValueError(f"the graph has no input {input_name!r} (it has {sorted(inputs)})")
        self._input_name = input_name
        outputs = [o.name for o in self._session.get_outputs()]
        if output_name is not None and output_name not in outputs:
            raise ValueError(f"the graph has no output {output_name!r} (it has {outputs})")
        self._output_names = [output_name or outputs[0]]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """[N, 3, H, W] float32 -> [N, num_labels] float32."""
        result = self._session.run(self._output_names, {self._input_name: batch})
        return np.asarray(result[0], dtype=np.float32)
