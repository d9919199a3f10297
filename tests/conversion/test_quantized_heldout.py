"""conversion/quantized_heldout.py's graph probe: which tensor holds the ImageNet logits (the full leave-one-out
on the shipped file is recomputed in tests/conversion/test_quantize_shipped.py)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from conversion.quantized_heldout import imagenet_logits_tensor


def _two_softmaxes() -> onnx.ModelProto:
    """x -> Softmax (the 'ImageNet' one) -> Log -> Softmax (the head's): the shape of a mass-logistic graph."""
    nodes = [
        helper.make_node("Softmax", ["x"], ["p"], name="first", axis=1),
        helper.make_node("Log", ["p"], ["logp"]),
        helper.make_node("Softmax", ["logp"], ["y"], name="head", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_logits_are_what_the_first_softmax_reads() -> None:
    """Not the head's own Softmax, which reads log masses."""
    assert imagenet_logits_tensor(_two_softmaxes()) == "x"


def test_a_graph_without_a_softmax_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    with pytest.raises(ValueError, match="no Softmax"):
        imagenet_logits_tensor(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
