"""INT8's own held-out figures for `pretrained`: the leave-one-out of conversion/reference.py, answered by the
INT8 file.

The shipped INT8 graph is the FP32 graph with its backbone quantized; the head (from the last global pooling on:
the ImageNet Gemm and softmax, the mass sums and the logistic head) stays FP32 and carries the very weights
fitted on FP32's features. So a photo the head never saw is answered, as INT8 serves it, by a head fitted on the
other photos' FP32 features applied to the INT8 backbone's ImageNet logits for that photo. That is what this
module computes: the fold heads are FP32's (`heldout.leave_one_out`, fitted on every view of the other photos),
and only the held-out photo's own row comes from the INT8 graph, run as exact integer arithmetic (what VNNI CPUs
compute and the card's figures describe; conversion/onnxrun.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conversion.architectures import efficientnet_lite_imagenet
from conversion.heads import backbone_views, fit_logistic, log_masses, predict_logistic
from conversion.heldout import leave_one_out, report
from conversion.onnxrun import run_onnx, session_from_model
from conversion.photos import LabelledImage
from conversion.preprocess import preprocess_batch


def imagenet_logits_tensor(model: onnx.ModelProto) -> str:
    """The ImageNet logits: what the graph's first Softmax reads (`MassLogistic` applies it to the 1000 classes
    before its mass sums; the second is the logistic head's own)."""
    softmax = next((n for n in model.graph.node if n.op_type == "Softmax"), None)
    if softmax is None:
        raise ValueError("the graph has no Softmax over ImageNet logits: not a mass-logistic model")
    return str(softmax.input[0])


def graph_logits(path: Path, photos: Sequence[LabelledImage], card: Mapping[str, Any]) -> np.ndarray:
    """[N, 1000] ImageNet logits of each photo's served centre crop through the ONNX file at `path`."""
    model = onnx.load(str(path))
    sess = session_from_model(model, outputs=[imagenet_logits_tensor(model)])
    return run_onnx(sess, preprocess_batch([p.path for p in photos], card))


def int8_heldout(
    folder: Path,
    photos: Sequence[LabelledImage],
    card: Mapping[str, Any],
    *,
    variant: int,
    l2: float,
    crops: int,
    labels: Sequence[str],
) -> dict[str, Any]:
    """The `heldout` section of `variants.int8` (conversion/heldout.py `report`'s shape)."""
    features = log_masses(backbone_views(efficientnet_lite_imagenet(variant), photos, card, crops=crops))
    rows = log_masses(graph_logits(folder / card["variants"]["int8"]["file"], photos, card))
    truth = [list(labels).index(p.label) for p in photos]

    def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        w, b = fit_logistic(x, y, l2=l2)
        return lambda r: predict_logistic(r, w, b)

    held = leave_one_out(features, truth, fit, rows=rows)
    return report(
        [p.path.name for p in photos],
        [p.label for p in photos],
        [labels[int(k)] for k in held.argmax(1)],
        held.max(1).tolist(),
        f"leave-one-out, answered by the INT8 file: each photo's centre crop through the INT8 backbone (exact "
        f"integer arithmetic) and a head fitted on the other {len(photos) - 1} photos' FP32 features (centre crop "
        f"+ {crops} augmented crops each), as the shipped head is fitted on FP32's",
    )
