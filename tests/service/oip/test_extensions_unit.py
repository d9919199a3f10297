"""Triton's extensions as protocol-free pieces: model configuration from a card, classification of a tensor,
statistics from the data plane's tally (with a request's stage times as its permit carries them)."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import json_format

from service.dataplane.card import ModelCard
from service.dataplane.tally import InferenceTally, RequestTimings
from service.errors import MalformedRequest
from service.grpc import inference_pb2 as pb
from service.oip.classification import class_count, classify
from service.oip.config import model_config, triton_version
from service.oip.statistics import model_statistics
from service.oip.tensors import FP32, OutputTensor

CARD = ModelCard.model_validate(
    {
        "name": "pretrained",
        "version": "2.0.0",
        "labels": ["cat", "dog", "other"],
        "input": {"name": "input", "height": 224, "width": 224},
    }
)


def test_config_is_tritons_and_parses_into_its_message() -> None:
    config = model_config("pretrained", CARD, max_batch_size=16, batch_max_size=8, batch_max_wait_ms=2.5)
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 16
    assert [(i["name"], i["data_type"], i["dims"], i["optional"]) for i in config["input"]] == [
        ("image", "TYPE_STRING", [1], True),
        ("input", "TYPE_FP32", [3, 224, 224], True),
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", [3]),
        ("label", "TYPE_STRING", [1]),
    ]
    assert config["version_policy"] == {"specific": {"versions": [2]}}
    assert config["dynamic_batching"] == {"preferred_batch_size": [8], "max_queue_delay_microseconds": 2500}
    message = json_format.ParseDict({"config": config}, pb.ModelConfigResponse()).config
    assert message.max_batch_size == 16
    assert message.input[1].dims == [3, 224, 224]
    assert message.dynamic_batching.max_queue_delay_microseconds == 2500


def test_no_dynamic_batching_without_batches() -> None:
    config = model_config("m", CARD, max_batch_size=4, batch_max_size=1, batch_max_wait_ms=0)
    assert "dynamic_batching" not in config


@pytest.mark.parametrize(("card", "triton"), [("2.0.0", "2"), ("10", "10"), ("0.1.0", "1"), ("v3", "1")])
def test_triton_version(card: str, triton: str) -> None:
    assert triton_version(card) == triton


def test_classification_is_top_k_in_tritons_format() -> None:
    rows = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    out = classify(OutputTensor("probabilities", FP32, [2, 3], rows), 2, ["cat", "dog", "other"])
    assert out.datatype == "BYTES"
    assert out.shape == [2, 2]
    assert out.data == [b"0.700000:1:dog", b"0.200000:2:other", b"0.500000:0:cat", b"0.250000:1:dog"]
    whole = classify(OutputTensor("probabilities", FP32, [2, 3], rows), 9, ["cat", "dog", "other"])
    assert whole.shape == [2, 3]


@pytest.mark.parametrize("k", [0, -1, "2", 1.5, True])
def test_class_count_must_be_a_positive_integer(k: object) -> None:
    with pytest.raises(MalformedRequest, match="classification"):
        class_count("probabilities", {"classification": k})
    assert class_count("probabilities", {}) is None


def test_statistics_from_the_tally() -> None:
    tally = InferenceTally()
    timings = RequestTimings(compute_input_ns=5_000)
    timings.batch(enqueued=1.0, began=1.002, started=1.002, finished=1.012)  # waited 2 ms, ran 10 ms
    timings.batch(enqueued=1.0, began=1.012, started=1.012, finished=1.020)  # its second image, right after
    tally.batch("m", 1, 0.010)
    tally.batch("m", 1, 0.008)
    tally.request("m", ok=True, seconds=0.025, timings=timings)
    tally.request("m", ok=False, seconds=0.001)
    stats = model_statistics(tally, "m", "2")
    assert stats["inference_count"] == 2
    assert stats["execution_count"] == 2
    inference = stats["inference_stats"]
    assert inference["success"] == {"count": 1, "ns": 25_000_000}
    assert inference["fail"] == {"count": 1, "ns": 1_000_000}
    assert inference["compute_infer"] == {"count": 1, "ns": 18_000_000}
    assert inference["compute_input"] == {"count": 1, "ns": 5_000}
    assert inference["queue"] == {"count": 1, "ns": 2_000_000}
    assert stats["batch_stats"] == [
        {
            "batch_size": 1,
            "compute_input": {"count": 2, "ns": 0},
            "compute_infer": {"count": 2, "ns": 18_000_000},
            "compute_output": {"count": 2, "ns": 0},
        }
    ]
    assert stats["last_inference"] > 0
    assert json_format.ParseDict({"model_stats": [stats]}, pb.ModelStatisticsResponse()).model_stats[0].name == "m"
