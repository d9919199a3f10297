"""PyTorch vs ONNX Runtime on the same real inputs: the conversion fails when they disagree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from conversion.onnxrun import run_onnx, session

FP32_TOLERANCE = 1e-4
TORCH_THREADS = 1
"""PyTorch's float results depend on its thread count; fixing it keeps the card's parity figures repeatable."""


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from PyTorch's by more than the tolerance, or the labels differ."""


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    label_agreement: int
    tolerance: float
    onnxruntime_version: str

    def to_card(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "label_agreement": f"{self.label_agreement}/{self.images}",
            "tolerance": self.tolerance,
            "onnxruntime": self.onnxruntime_version,
            "provider": "CPUExecutionProvider",
        }


def run_torch(module: nn.Module, batch: np.ndarray, chunk: int = 8) -> np.ndarray:
    with torch.no_grad():
        outs = [module(torch.from_numpy(batch[i : i + chunk])).numpy() for i in range(0, len(batch), chunk)]
    return np.concatenate(outs).astype(np.float32)


def check_parity(
    module: nn.Module, onnx_path: Path, batch: np.ndarray, tolerance: float = FP32_TOLERANCE
) -> ParityReport:
    """Compare outputs on `batch` ([N,3,H,W] real preprocessed photos); raise ParityError beyond tolerance."""
    torch.set_num_threads(TORCH_THREADS)
    expected = run_torch(module.eval(), batch)
    actual = run_onnx(session(onnx_path), batch)
    report = ParityReport(
        images=len(batch),
        max_abs_diff=float(np.max(np.abs(expected - actual))),
        label_agreement=int(np.sum(expected.argmax(1) == actual.argmax(1))),
        tolerance=tolerance,
        onnxruntime_version=ort.__version__,
    )
    if report.max_abs_diff > tolerance or report.label_agreement != report.images:
        raise ParityError(
            f"ONNX Runtime differs from PyTorch: max |diff| {report.max_abs_diff:.3g} (tolerance {tolerance}), "
            f"labels agree on {report.label_agreement}/{report.images}"
        )
    return report
