"""Graceful drain on SIGTERM against the real server process: readiness 503 at once, admitted requests finish,
new ones get 503 `draining`, and the process exits within CATDOG_DRAIN_TIMEOUT_S."""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.hostile import JPEG, write_slow_repository
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slow_repository(tmp_path_factory.mktemp("slow"))


def _client(svc: ServiceProcess) -> httpx.Client:
    """One client shared by the burst's threads (made up front: a client per thread costs an SSL context each,
    enough under load for the first requests to finish before the last are sent)."""
    return httpx.Client(base_url=svc.base_url, timeout=30.0, limits=httpx.Limits(max_connections=64))


def _post(client: httpx.Client) -> httpx.Response | Exception:
    try:
        return client.post("/predict/pretrained", files={"file": ("a.jpg", JPEG, "image/jpeg")})
    except httpx.HTTPError as exc:
        return exc


def _wait_until_all_arrived(svc: ServiceProcess, futures: list[Future[httpx.Response | Exception]]) -> None:
    """Until every request of the burst is in the service (running, queued or already answered)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _in_flight(svc) + sum(f.done() for f in futures) >= len(futures):
            return
        time.sleep(0.01)
    raise AssertionError("the burst did not reach the service")


def _in_flight(svc: ServiceProcess) -> float:
    text = svc.client.get("/metrics").text
    found = re.search(r'^catdog_requests_in_flight\{model="pretrained"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class ReadinessWatch(threading.Thread):
    """Polls /readyz every 20 ms and records (time, status or 'refused') until the process is gone."""

    def __init__(self, svc: ServiceProcess) -> None:
        super().__init__(daemon=True)
        self.svc = svc
        self.seen: list[tuple[float, int | str]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.svc.base_url, timeout=2.0) as client:
            while self.svc.proc is not None and self.svc.proc.poll() is None:
                try:
                    status: int | str = client.get("/readyz").status_code
                except httpx.HTTPError:
                    status = "refused"
                self.seen.append((time.monotonic(), status))
                time.sleep(0.02)

    def first(self, status: int | str) -> float:
        return next(t for t, s in self.seen if s == status)


def test_sigterm_drains_accepted_requests_and_refuses_new_ones(slow_repository: Path) -> None:
    env = {
        "CATDOG_MODEL_DIR": str(slow_repository),
        "CATDOG_INTRA_OP_THREADS": "1",
        "CATDOG_BATCH_MAX_SIZE": "1",
        "CATDOG_QUEUE_MAX": "64",
        "CATDOG_ADMISSION_MIN_LIMIT": "64",  # every request of the burst admitted: this is about draining them
        "CATDOG_DRAIN_DELAY_S": "1.5",
        "CATDOG_DRAIN_TIMEOUT_S": "15",
    }
    svc = ServiceProcess(env).start()
    watch = ReadinessWatch(svc)
    watch.start()
    with ThreadPoolExecutor(max_workers=40) as pool, _client(svc) as client:
        accepted = [pool.submit(_post, client) for _ in range(24)]  # ~2.4 s of work, one at a time
        _wait_until_all_arrived(svc, accepted)
        assert svc.proc is not None
        signalled = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # During the drain delay the socket is open: new predictions are refused with 503, not connection errors.
        late = svc.client.post("/predict/pretrained", files={"file": ("a.jpg", JPEG, "image/jpeg")})
        assert late.status_code == 503
        assert late.json()["error"]["code"] == "draining"
        assert late.headers["retry-after"] == "5"
        assert late.headers["connection"] == "close"
        ready = svc.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "draining"
        assert svc.client.get("/livez").status_code == 200
        results = [f.result() for f in accepted]
    svc.proc.wait(timeout=30)
    exited = time.monotonic()
    watch.join(timeout=5)
    svc.stop()

    statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results]
    assert statuses == [200] * 24, statuses
    assert watch.first(503) - signalled < 0.3, "readiness did not turn 503 at once"
    assert watch.first(503) < exited
    assert exited - signalled <= 15, f"exited {exited - signalled:.1f} s after SIGTERM"
    assert exited - signalled >= 1.5, "the socket closed before the drain delay"
    events = [r.get("event") for r in svc.logs()]
    assert "drain_started" in events
    assert events.index("drain_started") < events.index("stopped")


def test_drain_timeout_bounds_the_exit(slow_repository: Path) -> None:
    """More admitted work than the drain timeout allows: the process still exits in time."""
    env = {
        "CATDOG_MODEL_DIR": str(slow_repository),
        "CATDOG_INTRA_OP_THREADS": "1",
        "CATDOG_BATCH_MAX_SIZE": "1",
        "CATDOG_ADMISSION_MIN_LIMIT": "64",  # all 40 admitted (admission would refuse most of them at once)
        "CATDOG_DRAIN_TIMEOUT_S": "2",
    }
    svc = ServiceProcess(env).start()
    with ThreadPoolExecutor(max_workers=40) as pool, _client(svc) as client:
        burst = [pool.submit(_post, client) for _ in range(40)]  # ~4 s of work
        _wait_until_all_arrived(svc, burst)
        assert svc.proc is not None
        signalled = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        svc.proc.wait(timeout=30)
        exited = time.monotonic()
        results = [f.result() for f in burst]
    svc.stop()
    assert exited - signalled <= 2.0 + 0.75, f"exited {exited - signalled:.2f} s after SIGTERM"
    done = [r for r in results if isinstance(r, httpx.Response) and r.status_code == 200]
    assert 5 <= len(done) < 40  # some finished inside the budget, the rest were cut at the deadline


def test_sigterm_while_loading_exits_without_delay(slow_repository: Path) -> None:
    env = {"CATDOG_MODEL_DIR": str(slow_repository), "CATDOG_DRAIN_DELAY_S": "10"}
    svc = ServiceProcess(env).start(wait="live")
    signalled = time.monotonic()
    svc.stop(signal.SIGTERM)
    assert time.monotonic() - signalled < 8, "waited out the drain delay although never ready"
