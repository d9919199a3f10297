"""Small ONNX classifiers built with onnx.helper, so service tests need no PyTorch and no shipped weights.

The graph averages each colour channel and maps the three means linearly to class scores. Its answers are
therefore predictable from the picture: with the default weights a red image is "cat" and a blue one "dog".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RED_IS_CAT = np.array([[4.0, -4.0], [0.0, 0.0], [-4.0, 4.0]], dtype=np.float32)
"""Rows: R, G, B channel means (after normalisation); columns: cat, dog."""


def build_colour_classifier(
    weights: np.ndarray = RED_IS_CAT,
    *,
    height: int = 32,
    width: int = 32,
    softmax: bool = True,
    extra_matmuls: int = 0,
    opset: int = 18,
) -> onnx.ModelProto:
    """A [N,3,H,W] -> [N,K] classifier; `extra_matmuls` adds square MatMuls to make a run measurably slow."""
    num_classes = weights.shape[1]
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0)]
    inits = [
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(weights.astype(np.float32), "W"),
    ]
    features = "pooled"
    if extra_matmuls:
        # A [N,3] -> [N,512] projection followed by square layers; the result is added back at zero weight
        # so the answer stays that of the colour rule.
        inits += [
            numpy_helper.from_array(np.full((3, 512), 1e-3, dtype=np.float32), "P"),
            numpy_helper.from_array(np.eye(512, dtype=np.float32), "Q"),
            numpy_helper.from_array(np.zeros((512, 3), dtype=np.float32), "Z"),
        ]
        nodes.append(helper.make_node("MatMul", ["pooled", "P"], ["h0"]))
        for i in range(extra_matmuls):
            nodes.append(helper.make_node("MatMul", [f"h{i}", "Q"], [f"h{i + 1}"]))
        nodes.append(helper.make_node("MatMul", [f"h{extra_matmuls}", "Z"], ["zero"]))
        nodes.append(helper.make_node("Add", ["pooled", "zero"], ["features"]))
        features = "features"
    out = "probabilities" if softmax else "logits"
    if softmax:
        nodes.append(helper.make_node("MatMul", [features, "W"], ["scores"]))
        nodes.append(helper.make_node("Softmax", ["scores"], [out], axis=1))
    else:
        nodes.append(helper.make_node("MatMul", [features, "W"], [out]))
    graph = helper.make_graph(
        nodes,
        "colour_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, height, width])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model_dir(
    root: Path,
    name: str,
    *,
    labels: tuple[str, ...] = ("cat", "dog"),
    model: onnx.ModelProto | None = None,
    version: str = "1.0.0",
    card_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write `root/name/model.onnx` and a valid `model.json` for it; returns the folder."""
    model = model if model is not None else build_colour_classifier()
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    input_shape = model.graph.input[0].type.tensor_type.shape.dim
    output_name = model.graph.output[0].name
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": f"test model {name}",
        "labels": list(labels),
        "input": {"name": "input", "height": input_shape[2].dim_value, "width": input_shape[3].dim_value},
        "output": {
            "name": output_name,
            "kind": "probabilities" if output_name == "probabilities" else "logits",
        },
        "preprocessing": {
            "resize_short_side": input_shape[2].dim_value,
            "crop": "center",
            "interpolation": "bilinear",
            "mean": [127.5, 127.5, 127.5],
            "std": [127.5, 127.5, 127.5],
        },
        "onnx": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "opset": model.opset_import[0].version,
            "size_bytes": len(data),
        },
        "license": "Apache-2.0",
    }
    card.update(card_overrides or {})
    (folder / "model.json").write_text(json.dumps(card, indent=2))
    return folder


def write_test_repository(root: Path) -> Path:
    """The repository most service tests use: `pretrained` (cat/dog/other, softmax) and `scratch` (logits)."""
    three = np.concatenate([RED_IS_CAT, np.array([[0.0], [4.0], [0.0]], dtype=np.float32)], axis=1)
    write_model_dir(root, "pretrained", labels=("cat", "dog", "other"), model=build_colour_classifier(three))
    write_model_dir(root, "scratch", model=build_colour_classifier(height=48, width=40, softmax=False), version="0.1.0")
    return root


def build_tiny_cnn(*, size: int = 32, channels: int = 8, num_classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """Conv-ReLU-Conv-ReLU-GlobalAveragePool-Gemm-Softmax with seeded random weights: small, but with the layers
    INT8 quantization acts on (convolutions, a pooled head), for tests of conversion/quantize.py."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((channels, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype(np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.2).astype(np.float32), "w2"),
        numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype(np.float32), "b2"),
        numpy_helper.from_array((rng.standard_normal((num_classes, channels)) * 2.0).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(num_classes, dtype=np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], name="fc", transB=1),
        helper.make_node("Softmax", ["scores"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_version_dir(
    root: Path,
    name: str,
    version: str,
    *,
    model: onnx.ModelProto | None = None,
    labels: tuple[str, ...] = ("cat", "dog"),
) -> Path:
    """One version in the nested layout: `root/name/version/model.onnx + model.json` (the card's version is the
    folder's name, its name the model's)."""
    return write_model_dir(
        root / name, version, model=model, labels=labels, version=version, card_overrides={"name": name}
    )
