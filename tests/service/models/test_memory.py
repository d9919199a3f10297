"""Load and unload a model 50 times on the running service: its resident memory comes back to within a few MB
of where it was after the first cycles (no session, batcher or thread outlives its version)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.access import keys_document
from tests.support.onnx_models import build_colour_classifier, write_version_dir
from tests.support.server import ServiceProcess
from tests.support.waiting import wait_until

KEY = "catdog_test-memory-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
CYCLES = 50
MiB = 1024 * 1024


def status(pid: int, field: str) -> int:
    """A number from /proc/<pid>/status (`VmRSS` in kB, `Threads`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def cycle(svc: ServiceProcess) -> None:
    assert svc.client.post("/v2/repository/models/big/load", headers=ADMIN).status_code == 200
    assert svc.client.post("/v1/models/big/predict", files={"file": ("x.png", _png())}).status_code == 200
    assert svc.client.post("/v2/repository/models/big/unload", headers=ADMIN).status_code == 200

    def closed() -> bool:
        index = svc.client.post("/v2/repository/index", headers=ADMIN).json()
        return any(e["name"] == "big" and e["state"] == "UNAVAILABLE" for e in index)

    wait_until(closed, what="the version closed")


def _png() -> bytes:
    from tests.support.images import RED, encode, solid

    return encode(solid(RED, (32, 32)), "PNG")


@pytest.mark.slow
def test_fifty_loads_and_unloads_leave_memory_where_it_was(tmp_path: Path) -> None:
    # A graph with 1 MB of weights per square layer: a leaked session would show as MBs each time.
    write_version_dir(tmp_path / "repo", "big", "1", model=build_colour_classifier(extra_matmuls=6))
    (tmp_path / "keys.json").write_bytes(keys_document({"ops": (KEY, ["admin", "infer", "metrics"])}))
    env = {
        "CATDOG_MODEL_DIR": str(tmp_path / "repo"),
        "CATDOG_MODEL_CONTROL": "explicit",
        "CATDOG_API_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    svc = ServiceProcess(env)
    svc.client.headers.update(ADMIN)
    with svc.start():
        assert svc.proc is not None
        for _ in range(5):
            cycle(svc)
        baseline = status(svc.proc.pid, "VmRSS") * 1024
        threads = status(svc.proc.pid, "Threads")
        for _ in range(CYCLES):
            cycle(svc)
        grown = status(svc.proc.pid, "VmRSS") * 1024 - baseline
        assert grown < 8 * MiB, f"RSS grew {grown / MiB:.1f} MiB over {CYCLES} load/unload cycles"
        # Each version's inference thread goes with it (a leak would be one per cycle); asyncio's default pool,
        # where loads run, may still grow by a few threads up to its cap.
        assert status(svc.proc.pid, "Threads") <= threads + 4
        metrics = svc.client.get("/metrics").text
        assert f'catdog_model_unloads_total{{model="big",version="1"}} {float(CYCLES + 5)}' in metrics
        assert 'catdog_model_versions_ready{model="big"} 0.0' in metrics
        print(f"RSS after {CYCLES} cycles: {grown / MiB:+.2f} MiB against the baseline of {baseline / MiB:.1f} MiB")
