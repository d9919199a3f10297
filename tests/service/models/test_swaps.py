"""Swaps under load: closed-loop clients on /v1, /v2 REST and gRPC keep asking while versions are added and
removed, in poll and in explicit mode. Not one answer may fail, and in each client's sequence the version moves
exactly once per swap (no request sees a half-loaded model, none goes back)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from loadtest.swaps import SwapLoad, failures, moves
from tests.support.access import keys_document
from tests.support.oip import red_jpeg
from tests.support.onnx_models import write_version_dir
from tests.support.server import ServiceProcess
from tests.support.waiting import wait_until

TOKEN = "catdog_test-swap-key"


def add_version(repo: Path, version: str) -> None:
    """Written beside the repository, then renamed in: a poll sees all of the version or none of it."""
    staging = repo.parent / "staging"
    write_version_dir(staging, "m", version)
    os.replace(staging / "m" / version, repo / "m" / version)


def all_workers_on(load: SwapLoad, version: str, after: int) -> bool:
    """Every worker has answered from `version` in a request started after answer number `after`."""
    answers = load.snapshot()[after:]
    workers = {f"{p}-{i}" for p in load.protocols for i in range(load.workers_per_protocol)}
    return workers <= {a.worker for a in answers if a.ok and a.version == version}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["poll", "explicit"])
def test_no_request_fails_and_the_version_moves_once_per_swap(tmp_path: Path, mode: str) -> None:
    repo = tmp_path / "repo"
    write_version_dir(repo, "m", "1")
    keys = tmp_path / "keys.json"
    keys.write_bytes(keys_document({"ops": (TOKEN, ["admin", "infer", "metrics"])}))
    env = {
        "CATDOG_MODEL_DIR": str(repo),
        "CATDOG_MODEL_CONTROL": mode,
        "CATDOG_MODEL_POLL_S": "0.2",
        "CATDOG_MODEL_LOAD": "m",
        "CATDOG_API_KEYS_FILE": str(keys),
    }
    admin = {"Authorization": f"Bearer {TOKEN}"}
    svc = ServiceProcess(env)
    svc.client.headers.update(admin)
    with svc.start():
        load = SwapLoad(svc.base_url, svc.grpc_target, "m", red_jpeg(), headers=admin).start()
        try:
            wait_until(lambda: all_workers_on(load, "1", 0), what="every client answered by version 1")
            mark = len(load.snapshot())
            add_version(repo, "2")
            if mode == "explicit":
                assert svc.client.post("/v2/repository/models/m/load", headers=admin).status_code == 200
            wait_until(lambda: all_workers_on(load, "2", mark), what="every client moved to version 2")
            mark = len(load.snapshot())
            shutil.rmtree(repo / "m" / "2")  # roll back: version 1 is the latest again
            if mode == "explicit":
                assert svc.client.post("/v2/repository/models/m/load", headers=admin).status_code == 200
            wait_until(lambda: all_workers_on(load, "1", mark), what="every client back on version 1")
        finally:
            answers = load.stop()
        assert failures(answers) == []
        assert len(answers) >= 30
        sequences = moves(answers)
        assert len(sequences) == 6
        assert all(seq == ["1", "2", "1"] for seq in sequences.values()), sequences
        metrics = svc.client.get("/metrics").text
        assert 'catdog_model_loads_total{model="m",outcome="loaded",version="2"} 1.0' in metrics
        assert 'catdog_model_unloads_total{model="m",version="2"} 1.0' in metrics
