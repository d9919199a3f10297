"""ONNX Runtime sessions as the conversion measures them: CPU, fixed threads (figures must not depend on the
machine's core count), chunked runs. No PyTorch here, so evaluating a shipped model needs only ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the quantized graphs warn about unused initialisers
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(sess: ort.InferenceSession, batch: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Outputs for `batch`, run in chunks to bound memory."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: batch[i : i + chunk]})[0] for i in range(0, len(batch), chunk)]
    return np.concatenate(outs).astype(np.float32)
