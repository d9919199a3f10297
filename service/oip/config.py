"""Triton's model configuration (the `model_configuration` extension) built from a model's card: what
`GET /v2/models/{m}/config` and gRPC `ModelConfig` answer, and what perf_analyzer and Triton's example clients
read before their first request.

The JSON is Triton's (model_config.proto's field names, numbers as numbers, enums by name), so tritonclient's HTTP
client returns it as Triton's does and gRPC parses it into `inference.ModelConfig` unchanged. `max_batch_size` is
the most images one request may carry (`CATDOG_MAX_FILES_PER_REQUEST`): every catdog model takes a batch, so input
and output dims leave the batch dimension out, as in Triton; `perf_analyzer -b N` then sends `image` as BYTES
[N, 1] and the FP32 input as [N, 3, H, W]. Each request sends exactly one of the two inputs, so both are
`optional`. `label` is one string per image: dims [1] with `reshape: []`, Triton's spelling of a tensor that is
[batch] on the wire.

Triton numbers versions (folders 1, 2, ...) and its tools read them as integers (perf_analyzer finds a model's
statistics under `std::to_string(std::stoll(version))`), while a card's version is a release string ("2.0.0"). The
Triton number of a model is its card's leading integer (`triton_version`): the version policy names it, the
statistics report it, and every /v2 call accepts it beside the card's own string.
"""

from __future__ import annotations

import re
from typing import Any

from service.dataplane.card import ModelCard

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
IMAGE_INPUT = "image"
PROBABILITIES = "probabilities"
LABEL = "label"


def triton_version(card_version: str) -> str:
    """The card's version as Triton numbers it: its leading integer ("2.0.0" -> "2"), "1" when it has none."""
    match = re.match(r"\d+", card_version)
    return str(int(match.group())) if match and int(match.group()) > 0 else "1"


def model_config(
    name: str,
    card: ModelCard,
    *,
    max_batch_size: int,
    batch_max_size: int,
    batch_max_wait_ms: float,
    model_file: str | None = None,
) -> dict[str, Any]:
    """The model configuration of one model (catdog serves one version of each: the card's)."""
    config: dict[str, Any] = {
        "name": name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "version_policy": {"specific": {"versions": [int(triton_version(card.version))]}},
        "max_batch_size": max_batch_size,
        "input": [
            {"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1], "optional": True},
            {
                "name": card.input.name,
                "data_type": "TYPE_FP32",
                "format": "FORMAT_NCHW",
                "dims": [3, card.input.height, card.input.width],
                "optional": True,
            },
        ],
        "output": [
            {"name": PROBABILITIES, "data_type": "TYPE_FP32", "dims": [len(card.labels)]},
            {"name": LABEL, "data_type": "TYPE_STRING", "dims": [1], "reshape": {"shape": []}},
        ],
        "instance_group": [{"name": name, "kind": "KIND_CPU", "count": 1}],
        "default_model_filename": model_file or card.onnx.file,
        "parameters": {"version": {"string_value": card.version}, "labels": {"string_value": ",".join(card.labels)}},
    }
    if batch_max_size > 1:
        # The micro-batcher (service/dataplane/batching.py): runs of up to batch_max_size images, waiting at most
        # batch_max_wait_ms for a run to fill.
        config["dynamic_batching"] = {
            "preferred_batch_size": [batch_max_size],
            "max_queue_delay_microseconds": round(batch_max_wait_ms * 1000),
        }
    return config
