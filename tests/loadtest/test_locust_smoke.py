"""A short Locust smoke run in CI: the real service as a process, Locust headless as a subprocess through the
same entry point users run (`python -m loadtest run`), bounded in time, failing on any error. It also checks
that the report joins client-side and server-side figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT, ServiceProcess

# Never import locust here: it monkey-patches the process with gevent. Only look for it.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="the loadtest extra is not installed"),
]


@pytest.fixture(scope="module")
def served(tiny_repository: Path) -> Iterator[ServiceProcess]:
    """Shipped models when models/ has them, else the tiny test repository."""
    real = REPO_ROOT / "models"
    model_dir = real if len(list(real.glob("*/model.onnx"))) >= 2 else tiny_repository
    with ServiceProcess({"CATDOG_MODEL_DIR": str(model_dir)}) as svc:
        yield svc


def test_smoke_profile_runs_clean_and_reports(served: ServiceProcess, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "loadtest", "run", "--profile", "smoke", "--host", served.base_url]
    cmd += ["--users", "4", "--time-scale", "0.5", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    total = report["client"]["total"]
    assert total["requests"] >= 4 and total["failures"] == 0  # at least one per user, on a loaded machine too
    names = set(report["client"])
    assert {"POST /predict/pretrained", "POST /predict/scratch", "POST /v1/models/[name]/predict"} <= names
    server = report["server"]
    assert set(server) == {"pretrained", "scratch"}
    assert server["pretrained"]["images"] >= 1 and server["pretrained"]["inference_mean_ms"] > 0
    assert (run_dir / "locust.html").stat().st_size > 0
    assert "Server side" in (run_dir / "report.md").read_text()


def test_smoke_profile_with_api_keys(tiny_repository: Path, tmp_path: Path) -> None:
    """With access control on, Locust sends CATDOG_LOADTEST_API_KEY and the report scrapes /metrics with
    CATDOG_LOADTEST_METRICS_KEY: no failures, and the server's side of the report is there."""
    from tests.support.access import INFER, METRICS, keys_volume

    volume = keys_volume(tmp_path / "keys")
    env = {"CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_API_KEYS_FILE": str(volume.path("keys.json"))}
    with ServiceProcess(env) as svc:
        cmd = [sys.executable, "-m", "loadtest", "run", "--profile", "smoke", "--host", svc.base_url]
        cmd += ["--users", "2", "--time-scale", "0.3", "--out", str(tmp_path / "out")]
        keys = {"CATDOG_LOADTEST_API_KEY": INFER, "CATDOG_LOADTEST_METRICS_KEY": METRICS}
        done = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=90, check=False, env={**svc.env, **keys}
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (run_dir,) = (tmp_path / "out").iterdir()
        report = json.loads((run_dir / "report.json").read_text())
        assert report["client"]["total"]["requests"] >= 5 and report["client"]["total"]["failures"] == 0
        assert report["server"]["pretrained"]["images"] >= 1
        lines = svc.wait_for_log(lambda r: r.get("event") == "request" and r.get("key") == "ci", count=5)
        assert len(lines) >= 5
