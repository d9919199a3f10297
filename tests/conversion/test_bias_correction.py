"""conversion/bias_correction.py on a small depthwise-separable network the test builds: the mean shift it
computes is the convolution's own (checked against ONNX Runtime running the weight error as a Conv), and after
the correction each quantized layer's mean output is closer to FP32's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conversion import bias_correction as bc
from conversion import quantize as q
from conversion.onnxrun import session, session_from_model

SIZE = 24


def depthwise_separable(seed: int = 0) -> onnx.ModelProto:
    """Stem (stride 2, asymmetric padding as the exporter writes it) -> ReLU -> depthwise 3x3 -> ReLU -> pointwise
    -> pool -> Gemm -> Softmax: the layer kinds of EfficientNet-Lite, small."""
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...], scale: float, offset: float = 0.0) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale + offset).astype(np.float32), name)

    inits = [
        init("w_stem", (16, 3, 3, 3), 0.4),
        init("b_stem", (16,), 0.2, 0.3),
        init("w_dw", (16, 1, 3, 3), 0.6),
        init("b_dw", (16,), 0.2, 0.2),
        init("w_pw", (12, 16, 1, 1), 0.3),
        init("b_pw", (12,), 0.1),
        init("fc_w", (3, 12), 1.0),
        init("fc_b", (3,), 0.0),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w_stem", "b_stem"], ["c0"], name="stem", pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w_dw", "b_dw"], ["c1"], name="depthwise", pads=[1, 1, 1, 1], group=16),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w_pw", "b_pw"], ["c2"], name="pointwise"),
        helper.make_node("GlobalAveragePool", ["c2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], name="fc", transB=1),
        helper.make_node("Softmax", ["scores"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "depthwise_separable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (24, 3, SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize(
    ("group", "pads", "strides"),
    [(1, [0, 0, 1, 1], [2, 2]), (6, [1, 1, 1, 1], [1, 1]), (6, [2, 1, 0, 2], [2, 1]), (2, [0, 0, 0, 0], [1, 1])],
)
def test_the_shift_is_the_convolution_of_the_error_with_the_mean_input(
    group: int, pads: list[int], strides: list[int]
) -> None:
    rng = np.random.default_rng(2)
    mean_map = rng.uniform(0, 3, (6, 9, 11))
    error = rng.standard_normal((12, 6 // group, 3, 3))
    conv = {"pads": pads, "strides": strides, "group": group}
    shift = bc.output_shift(error, bc.window_means(mean_map, conv, (3, 3)), group)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=pads, strides=strides, group=group)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 9, 11])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(error.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    (out,) = session_from_model(model).run(None, {"x": mean_map[None].astype(np.float32)})
    assert shift == pytest.approx(out[0].mean((1, 2)), rel=1e-4, abs=1e-4)


def conv_mean_errors(fp32: Path, int8: Path, batch: np.ndarray) -> dict[str, float]:
    """Per quantized Conv, the largest |mean over images and positions| of INT8 - FP32 output, per channel."""
    fp32_model, int8_model = onnx.load(str(fp32)), onnx.load(str(int8))
    names = {n.name: n.output[0] for n in fp32_model.graph.node if n.op_type == "Conv"}
    int8_names = {n.name: n.output[0] for n in int8_model.graph.node if n.op_type == "Conv"}
    ref = bc.mean_inputs(fp32_model, list(names.values()), batch)
    got = bc.mean_inputs(int8_model, list(int8_names.values()), batch)
    return {k: float(np.abs(got[int8_names[k]].mean((1, 2)) - ref[v].mean((1, 2))).max()) for k, v in names.items()}


def test_correction_brings_each_layers_mean_output_to_fp32(tmp_path: Path, images: np.ndarray) -> None:
    fp32 = tmp_path / "fp32.onnx"
    onnx.save(depthwise_separable(), str(fp32))
    prepared = tmp_path / "prepared.onnx"
    q.prepare(fp32, prepared)
    plain, corrected = tmp_path / "plain.onnx", tmp_path / "corrected.onnx"
    assert q.quantize_with(prepared, plain, images, "input", q.Recipe(bias_correction=False)) == []
    report = q.quantize_with(prepared, corrected, images, "input", q.Recipe())
    assert [r["layer"] for r in report] == ["stem", "depthwise", "pointwise"]
    assert all(r["max_correction"] > 0 for r in report)

    before, after = conv_mean_errors(prepared, plain, images), conv_mean_errors(prepared, corrected, images)
    assert after["depthwise"] < 0.5 * before["depthwise"], (before, after)
    assert sum(after.values()) < sum(before.values()), (before, after)
    # Only the INT32 biases moved: weights and scales are the quantizer's.
    changed = {
        a.name
        for a, b in zip(
            onnx.load(str(plain)).graph.initializer, onnx.load(str(corrected)).graph.initializer, strict=True
        )
        if a.name == b.name and not np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    }
    assert changed and all(name.endswith("_quantized") and name.startswith("b_") for name in changed), changed
    # And the model still answers: FP32 and INT8 agree on the top class for most images.
    agree = session(prepared).run(None, {"input": images})[0].argmax(1) == session(corrected).run(
        None, {"input": images}
    )[0].argmax(1)
    assert agree.mean() >= 0.8
