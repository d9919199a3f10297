"""torch.nn.Module -> checked ONNX file with a dynamic batch axis and static height and width."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

DEFAULT_OPSET = 18
INPUT_NAME = "input"


def export_onnx(
    module: nn.Module,
    path: Path,
    *,
    height: int,
    width: int,
    output_name: str,
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """Export with the TorchScript exporter (`dynamo=False`: stable, no onnxscript rewrite), then check.

    The file is written only after `onnx.checker` (full check) and strict shape inference pass, so a broken
    graph never lands in a model folder.
    """
    module = module.eval()
    dummy = torch.zeros(1, 3, height, width)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices say nothing about this model
        torch.onnx.export(
            module,
            (dummy,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(tmp))
    tmp.unlink()
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return model
