"""Bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction").

Rounding a convolution's weights to INT8 shifts the mean of its output: E[W_q x] - E[W x] = (W_q - W) E[x].
Depthwise convolutions, with 9 or 25 weights per channel, are where that shift is largest relative to the
signal, and it adds up along a network. The correction subtracts it from each layer's bias. We have images, so
E[x] is measured (the FP32 model's mean input map over calibration images), not derived from batch-norm
statistics as in the data-free version; the shift is computed exactly, borders and zero padding included, as the
convolution of the weight error with that mean map, averaged over output positions.

Works on the QDQ file ONNX Runtime's quantizer wrote: the INT8 weights and scales are read back from its
DequantizeLinear nodes, and the INT32 biases are rewritten in place (their scale is input scale x weight scale,
fine enough that rounding the correction costs nothing). Deterministic: the same files and images give the same
bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from conversion.onnxrun import session_from_model


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def mean_inputs(model: onnx.ModelProto, tensors: Sequence[str], batch: np.ndarray, chunk: int = 8) -> dict[str, Any]:
    """The mean over images of each named tensor ([C, H, W], float64): one run of `model` with them as outputs."""
    sess = session_from_model(model, outputs=tensors)
    input_name = sess.get_inputs()[0].name
    sums: list[np.ndarray] = []
    for start in range(0, len(batch), chunk):
        outs = [
            o.astype(np.float64).sum(0) for o in sess.run(list(tensors), {input_name: batch[start : start + chunk]})
        ]
        sums = [s + o for s, o in zip(sums, outs, strict=True)] if sums else outs
    return {t: s / len(batch) for t, s in zip(tensors, sums, strict=True)}


def window_means(mean_map: np.ndarray, conv: Mapping[str, Any], kernel: tuple[int, int]) -> np.ndarray:
    """[C, kh, kw]: for each kernel tap, the mean of the (zero-padded) input over the output positions it touches.
    (W_q - W) contracted with it is the exact mean output shift of the convolution."""
    kh, kw = kernel
    top, left, bottom, right = conv.get("pads", [0, 0, 0, 0])
    sh, sw = conv.get("strides", [1, 1])
    dh, dw = conv.get("dilations", [1, 1])
    padded = np.pad(mean_map, ((0, 0), (top, bottom), (left, right)))
    out_h = (padded.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[2] - dw * (kw - 1) - 1) // sw + 1
    taps = np.empty((mean_map.shape[0], kh, kw))
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * dh : i * dh + sh * (out_h - 1) + 1 : sh, j * dw : j * dw + sw * (out_w - 1) + 1 : sw]
            taps[:, i, j] = window.mean((1, 2))
    return taps


def output_shift(error: np.ndarray, taps: np.ndarray, group: int) -> np.ndarray:
    """[C_out] mean output shift of a (grouped) convolution whose weights are off by `error` [C_out, C_in/g, kh, kw]."""
    c_out, c_group, kh, kw = error.shape
    per_group = error.reshape(group, c_out // group, c_group, kh, kw)
    return np.asarray(np.einsum("gockl,gckl->go", per_group, taps.reshape(group, c_group, kh, kw))).reshape(c_out)


def correct_biases(fp32_path: Path, int8_path: Path, batch: np.ndarray) -> list[dict[str, Any]]:
    """Rewrite the INT32 biases of every quantized Conv in `int8_path` (a QDQ file made from `fp32_path`) so that
    each layer's mean output matches FP32's on `batch`. Returns, per layer, the largest correction and the
    layer's mean |bias| for scale, in graph order."""
    fp32, int8 = onnx.load(str(fp32_path)), onnx.load(str(int8_path))
    fp32_init = {i.name: i for i in fp32.graph.initializer}
    init = {i.name: i for i in int8.graph.initializer}
    producer = {o: n for n in int8.graph.node for o in n.output}
    fp32_convs = {n.name: n for n in fp32.graph.node if n.op_type == "Conv" and len(n.input) > 2}

    def dequantized_from(tensor: str) -> onnx.NodeProto | None:
        node = producer.get(tensor)
        return node if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in init else None

    layers = []
    for node in int8.graph.node:
        if node.op_type != "Conv" or node.name not in fp32_convs or len(node.input) < 3:
            continue
        weight_dq, bias_dq = dequantized_from(node.input[1]), dequantized_from(node.input[2])
        if weight_dq is None or bias_dq is None:
            continue  # kept FP32
        layers.append((node, fp32_convs[node.name], weight_dq, bias_dq))
    if not layers:
        return []  # every convolution kept FP32
    means = mean_inputs(fp32, sorted({fp.input[0] for _, fp, _, _ in layers}), batch)
    report = []
    for node, fp, weight_dq, bias_dq in layers:
        weight = numpy_helper.to_array(fp32_init[fp.input[1]]).astype(np.float64)
        levels = numpy_helper.to_array(init[weight_dq.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(init[weight_dq.input[1]]).astype(np.float64).reshape(-1, 1, 1, 1)
        zero = numpy_helper.to_array(init[weight_dq.input[2]]).astype(np.float64).reshape(-1, 1, 1, 1)
        conv = attributes(fp)
        taps = window_means(means[fp.input[0]], conv, (weight.shape[2], weight.shape[3]))
        shift = output_shift((levels - zero) * scale - weight, taps, int(conv.get("group", 1)))
        bias = init[bias_dq.input[0]]
        bias_scale = numpy_helper.to_array(init[bias_dq.input[1]]).astype(np.float64)
        corrected = numpy_helper.to_array(bias).astype(np.int64) - np.round(shift / bias_scale).astype(np.int64)
        limit = np.iinfo(np.int32)
        bias.CopyFrom(numpy_helper.from_array(np.clip(corrected, limit.min, limit.max).astype(np.int32), bias.name))
        report.append(
            {
                "layer": node.name,
                "max_correction": round(float(np.abs(shift).max()), 4),
                "mean_abs_bias": round(float(np.abs(numpy_helper.to_array(fp32_init[fp.input[2]])).mean()), 4),
            }
        )
    onnx.save(int8, str(int8_path))
    return report
