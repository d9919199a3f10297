"""docs/api.md's Open Inference Protocol examples, run as written (only the ports change) against the service
over the shipped models: curl, tritonclient HTTP and gRPC, and KServe's SDK classify a real cat photo with the
same answer as /predict. Each runs in its own process (tritonclient.grpc and KServe's SDK cannot share one)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.support.server import REPO_ROOT, ServiceProcess

SECTION = "## Open Inference Protocol"
CAT = "cat-cat.webp"


def examples() -> list[tuple[str, str]]:
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: idx if (idx := section.find("\n## ", 1)) > 0 else len(section)]
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


def test_the_section_has_every_client() -> None:
    code = "\n".join(body for _, body in examples())
    for client in ("curl", "tritonclient.http", "tritonclient.grpc", "InferenceRESTClient", "InferenceGRPCClient"):
        assert client in code, client


@pytest.fixture(scope="module")
def svc() -> Iterator[ServiceProcess]:
    with ServiceProcess({"CATDOG_MODEL_DIR": str(REPO_ROOT / "models")}) as service:
        yield service


@pytest.fixture(scope="module")
def expected(svc: ServiceProcess, photos: dict[str, Path]) -> tuple[str, list[float]]:
    body = svc.client.post("/predict/pretrained", files={"file": ("cat.jpg", photos[CAT].read_bytes())}).json()
    labels = svc.client.get("/v1/models/pretrained").json()["labels"]
    assert body["label"] == "cat"
    return body["label"], [body["probabilities"][label] for label in labels]


@pytest.mark.parametrize("index", range(len(examples())))
def test_example_runs_and_agrees_with_predict(
    svc: ServiceProcess, photos: dict[str, Path], expected: tuple[str, list[float]], tmp_path: Path, index: int
) -> None:
    language, code = examples()[index]
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{svc.port}").replace("127.0.0.1:8001", svc.grpc_target)
    shutil.copy(photos[CAT], tmp_path / "cat.jpg")
    if language == "bash":
        require_tool("curl")
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    label, probabilities = expected
    if language == "bash":
        outputs = {o["name"]: o["data"] for o in json.loads(run.stdout)["outputs"]}
        answers = [(outputs["label"][0], outputs["probabilities"])]
    else:
        answers = [(line.split(" ", 1)[0], ast.literal_eval(line.split(" ", 1)[1])) for line in run.stdout.splitlines()]
    assert answers
    for got_label, got in answers:
        assert got_label == label
        assert got == pytest.approx(probabilities, abs=1e-5)
