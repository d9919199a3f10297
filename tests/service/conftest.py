"""Fixtures shared by the Open Inference Protocol's REST (tests/service/rest/test_v2.py) and gRPC
(tests/service/grpc/test_grpc.py) tests: one model repository of small ONNX models and one service over it per
module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.oip import write_oip_repository
from tests.support.server import ServiceProcess


@pytest.fixture(scope="module")
def oip_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_oip_repository(tmp_path_factory.mktemp("oip-models"))


@pytest.fixture(scope="module")
def oip_service(oip_repository: Path) -> Iterator[ServiceProcess]:
    env = {"CATDOG_MODEL_DIR": str(oip_repository), "CATDOG_MAX_FILES_PER_REQUEST": "4"}
    with ServiceProcess(env) as service:
        yield service
