"""ONNX Runtime sessions as the conversion measures them: CPU, fixed threads (figures must not depend on the
machine's core count), chunked runs. No PyTorch here, so evaluating a shipped model needs only ONNX Runtime.

INT8 is measured as exact integer arithmetic: `session.x64quantprecision` makes ONNX Runtime's AVX2 kernels
accumulate u8 x s8 products without the 16-bit saturation of their fast path (`vpmaddubsw`), which is what
AVX-512 VNNI and AVX-VNNI CPUs compute anyway. Without it, an AVX2-only CPU answers a QDQ file with full 8-bit
weights differently from a VNNI one (docs/models.md, "INT8"), and a card's figures would depend on the machine
that built it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

EXACT_INT8 = ("session.x64quantprecision", "1")


def options(threads: int = 1, exact_int8: bool = True) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: the quantized graphs warn about unused initialisers
    if exact_int8:
        opts.add_session_config_entry(*EXACT_INT8)
    return opts


def session(path: Path, threads: int = 1, exact_int8: bool = True) -> ort.InferenceSession:
    """`exact_int8=False`: ONNX Runtime's default kernels, as the service runs them (for speed, never answers)."""
    return ort.InferenceSession(str(path), options(threads, exact_int8), providers=["CPUExecutionProvider"])


def session_from_model(
    model: onnx.ModelProto, threads: int = 1, outputs: Sequence[str] | None = None
) -> ort.InferenceSession:
    """A session on an in-memory graph, never written to disk. `outputs`: a probe whose outputs are these
    intermediate tensors instead of the graph's own (`model` itself is left as it is)."""
    if outputs is not None:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in outputs)
        model = probe
    return ort.InferenceSession(model.SerializeToString(), options(threads), providers=["CPUExecutionProvider"])


def run_onnx(sess: ort.InferenceSession, batch: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Outputs for `batch`, run in chunks to bound memory."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: batch[i : i + chunk]})[0] for i in range(0, len(batch), chunk)]
    return np.concatenate(outs).astype(np.float32)
