"""/metrics carries every metric of the contract with its labels; stdout is one JSON object per line."""

from __future__ import annotations

import re

from tests.support.images import BLUE, RED, encode, solid
from tests.support.server import ServiceProcess

MODEL_HISTOGRAMS = [
    "catdog_request_duration_seconds",
    "catdog_preprocess_duration_seconds",
    "catdog_queue_wait_seconds",
    "catdog_inference_duration_seconds",
    "catdog_batch_size",
    "catdog_prediction_confidence",
    "catdog_image_bytes",
    "catdog_image_pixels",
]


def _traffic(service: ServiceProcess) -> None:
    for colour in (RED, BLUE):
        for path in ("/predict/pretrained", "/predict/scratch"):
            response = service.client.post(path, files={"file": ("x.png", encode(solid(colour), "PNG"))})
            assert response.status_code == 200
    service.client.post("/predict/scratch", files={"file": ("x.png", b"not an image")})


def test_metrics_after_traffic(service: ServiceProcess) -> None:
    _traffic(service)
    text = service.client.get("/metrics").text
    for name in MODEL_HISTOGRAMS:
        for model in ("pretrained", "scratch"):
            # catdog_request_duration_seconds also says which protocol (catdog's own routes here).
            match = re.search(rf'^{name}_count{{model="{model}"(?:,protocol="catdog")?}} (\S+)$', text, re.M)
            assert match, f"{name} for {model} missing"
            assert float(match.group(1)) >= 1
        assert f'{name}_bucket{{le="0.005",model="scratch"}}' in text or f"{name}_bucket" in text
    assert re.search(r'^catdog_predictions_total\{label="cat",model="pretrained"\} [1-9]', text, re.M)
    assert re.search(r'^catdog_predictions_total\{label="dog",model="scratch"\} [1-9]', text, re.M)
    assert re.search(r'^catdog_requests_in_flight\{model="scratch"\} 0\.0$', text, re.M)
    assert 'catdog_rejected_requests_total{model="scratch",reason="unsupported_type"}' in text
    assert re.search(
        r'^catdog_model_info\{model="scratch",precision="fp32",provider="CPUExecutionProvider",'
        r'sha256="[0-9a-f]{64}",version="0.1.0"\} 1',
        text,
        re.M,
    )
    assert re.search(r'^catdog_model_ready\{model="pretrained"\} 1\.0$', text, re.M)
    assert 'http_requests_total{handler="/predict/scratch",method="POST",status="200"}' in text
    assert 'http_request_duration_seconds_bucket{handler="/predict/pretrained",le="0.005",method="POST"}' in text
    assert "process_resident_memory_bytes" in text
    assert "_created" not in text
    # Millisecond-scale buckets and no summaries.
    assert 'catdog_inference_duration_seconds_bucket{le="0.001",model="scratch"}' in text
    assert "# TYPE catdog_request_duration_seconds histogram" in text
    assert "summary" not in " ".join(re.findall(r"^# TYPE (?:catdog|http)\S* (\w+)", text, re.M))


def test_json_access_log_lines(service: ServiceProcess) -> None:
    service.client.post(
        "/predict/pretrained",
        files={"file": ("x.png", encode(solid(RED, (70, 50)), "PNG"))},
        headers={"X-Request-ID": "log-check-1"},
    )
    access = service.wait_for_log(lambda r: r.get("request_id") == "log-check-1" and r.get("event") == "request")
    output = service.output()
    complete = output if output.endswith("\n") else output.rsplit("\n", 1)[0]  # the last line may be mid-write
    lines = [line for line in complete.splitlines() if line.strip()]
    records = service.logs()[: len(lines)]
    assert len(records) == len(lines), "every stdout line is one JSON object"
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "POST"
    assert line["path"] == "/predict/pretrained"
    assert line["status"] == 200
    assert line["duration_ms"] > 0
    assert line["model"] == "pretrained"
    assert line["label"] == "cat"
    assert 0 < line["confidence"] <= 1
    assert line["image_bytes"] > 0
    assert (line["width"], line["height"]) == (70, 50)
    assert line["level"] == "info"
    assert "timestamp" in line
    # uvicorn's own lines go through the same pipeline.
    assert any(r.get("logger", "").startswith("uvicorn") for r in records)
