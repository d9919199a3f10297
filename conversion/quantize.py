"""INT8 quantization with ONNX Runtime (static, QDQ, calibrated on real photos) and its cost/benefit report.

The report compares the INT8 graph with the fp32 one on the same photos: size, single-image latency and the
answers. The caller ships INT8 only when `acceptable` (no answer changes on the photos); the figures go into
the fp32 card either way, so the decision is visible.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from conversion.evaluate import Evaluation, evaluate
from conversion.onnxrun import run_onnx, session
from conversion.photos import LabelledImage
from conversion.preprocess import preprocess_batch

MAX_PROBABILITY_SHIFT = 0.05
"""A larger shift could move unseen photos across the card's `min_mass` threshold even if none of ours moved."""


class _PhotoReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds preprocessed photos one at a time to the calibrator."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._items = iter([{input_name: batch[i : i + 1]} for i in range(len(batch))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


@dataclass(frozen=True)
class QuantizationReport:
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float
    int8_ms: float
    fp32: Evaluation
    int8: Evaluation
    max_abs_diff: float

    @property
    def changed_answers(self) -> list[str]:
        pairs = zip(self.fp32.files, self.fp32.predicted, self.int8.predicted, strict=True)
        return [f for f, a, b in pairs if a != b]

    @property
    def acceptable(self) -> bool:
        """No answer changes on the photos and no probability moves by more than MAX_PROBABILITY_SHIFT."""
        return not self.changed_answers and self.max_abs_diff <= MAX_PROBABILITY_SHIFT

    def to_card(self) -> dict[str, Any]:
        """Deterministic figures only: latency varies run to run, so it is logged, not written to the card."""
        int8_accuracy = self.int8.to_card("same photos")
        return {
            "method": "onnxruntime.quantization static QDQ, per-channel INT8 weights, MinMax calibration "
            "on the bundled photos",
            "int8_size_bytes": self.int8_bytes,
            "size_ratio": round(self.int8_bytes / self.fp32_bytes, 3),
            "max_abs_diff_vs_fp32": round(self.max_abs_diff, 4),
            "int8_correct": f"{int8_accuracy['correct']}/{int8_accuracy['total']}",
            "answers_changed_vs_fp32": self.changed_answers,
            "shipped": self.acceptable,
            "ship_rule": f"ship INT8 only if no answer changes and max |diff| <= {MAX_PROBABILITY_SHIFT}",
        }


def quantize(
    fp32_path: Path, out_path: Path, card: Mapping[str, Any], photos: Sequence[LabelledImage]
) -> QuantizationReport:
    """Write the INT8 model to `out_path` and compare it with `fp32_path` on `photos`."""
    batch = preprocess_batch([p.path for p in photos], card)
    prepared = out_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    with _quiet_root_logger():  # the quantizer logs one INFO line per rescaled bias on the root logger
        _quantize_static(prepared, out_path, card, batch)
    prepared.unlink()
    fp32_out = run_onnx(session(fp32_path), batch)
    int8_out = run_onnx(session(out_path), batch)
    return QuantizationReport(
        fp32_bytes=fp32_path.stat().st_size,
        int8_bytes=out_path.stat().st_size,
        fp32_ms=latency_ms(fp32_path, batch[:1]),
        int8_ms=latency_ms(out_path, batch[:1]),
        fp32=evaluate(fp32_path, card, photos),
        int8=evaluate(out_path, card, photos),
        max_abs_diff=float(np.max(np.abs(fp32_out - int8_out))),
    )


def _quantize_static(prepared: Path, out_path: Path, card: Mapping[str, Any], batch: np.ndarray) -> None:
    quantize_static(
        str(prepared),
        str(out_path),
        _PhotoReader(card["input"]["name"], batch),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def latency_ms(path: Path, one: np.ndarray, runs: int = 30) -> float:
    """Median single-image latency on one intra-op thread, after warm-up."""
    sess = session(path, threads=1)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: one})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, {name: one})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
