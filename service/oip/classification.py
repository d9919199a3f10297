"""Triton's classification extension: a requested output with the parameter `classification: k` answers, instead
of the tensor itself, BYTES [batch, k] with the k largest values of each row in order, each as Triton writes it,
`"<score>:<index>:<label>"` (the score as C++'s std::to_string prints a float, six decimals; labels from the
card). k larger than the row is the whole row, as in Triton.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.errors import MalformedRequest
from service.oip.tensors import BYTES, OutputTensor

CLASSIFICATION = "classification"


def class_count(output: str, parameters: dict[str, Any]) -> int | None:
    """The `classification` parameter of a requested output: None when absent; a positive int, else 400."""
    if CLASSIFICATION not in parameters:
        return None
    k = parameters[CLASSIFICATION]
    if type(k) is not int or k < 1:
        raise MalformedRequest(f"output {output!r}: 'classification' must be a positive integer, not {k!r:.40}")
    return k


def classify(tensor: OutputTensor, k: int, labels: list[str]) -> OutputTensor:
    """`tensor` ([batch, classes] FP32) -> BYTES [batch, min(k, classes)] "score:index:label", best first."""
    if not isinstance(tensor.data, np.ndarray) or tensor.data.ndim != 2:
        raise MalformedRequest(f"output {tensor.name!r} is not a [batch, classes] FP32 tensor: no classification")
    rows = tensor.data
    k = min(k, rows.shape[1])
    # Stable, so equal scores keep the card's label order.
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    elements = [
        f"{float(rows[r, i]):f}:{int(i)}:{labels[i] if i < len(labels) else ''}".encode()
        for r in range(rows.shape[0])
        for i in order[r]
    ]
    return OutputTensor(tensor.name, BYTES, [rows.shape[0], k], elements)
