"""Key rotation against the real service, the way a mounted Secret changes (the kubelet's atomic `..data`
symlink swap), while a load generator calls both ports: no request with a valid key fails, the new key works
and the old one is refused within the reload interval, and a broken keys file keeps the keys that were there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.support.access import keys_document, keys_volume
from tests.support.certs import SecretVolume
from tests.support.oip import red_jpeg
from tests.support.server import ServiceProcess

RELOAD_S = 1.0
OLD = {"ci": ("catdog_rotation-old", ["infer"])}
BOTH = {"ci": ("catdog_rotation-old", ["infer"]), "ci-next": ("catdog_rotation-new", ["infer"])}
NEW = {"ci-next": ("catdog_rotation-new", ["infer"])}


class LoadGenerator:
    """Threads calling /predict over REST and ModelInfer over gRPC with whatever key `key` holds now; every
    answer that is not a cat is a failure."""

    def __init__(self, svc: ServiceProcess, key: str) -> None:
        self.svc = svc
        self.key = key
        self.failures: list[str] = []
        self.answers = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rest), threading.Thread(target=self._grpc)]

    def _rest(self) -> None:
        with httpx.Client(base_url=self.svc.base_url, timeout=30) as client:
            while not self._stop.is_set():
                key = self.key
                response = client.post(
                    "/predict/pretrained",
                    content=red_jpeg(),
                    headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {key}"},
                )
                self._record(
                    "rest", key, response.status_code == 200 and response.json()["label"] == "cat", response.text
                )

    def _grpc(self) -> None:
        client = triton.InferenceServerClient(self.svc.grpc_target)
        image = triton.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([red_jpeg()], dtype=np.object_))
        try:
            while not self._stop.is_set():
                key = self.key
                try:
                    result = client.infer("pretrained", [image], headers={"authorization": f"Bearer {key}"})
                    self._record("grpc", key, list(result.as_numpy("label")) == [b"cat"], "")
                except InferenceServerException as exc:
                    self._record("grpc", key, False, str(exc))
        finally:
            client.close()

    def _record(self, transport: str, key: str, ok: bool, detail: str) -> None:
        self.answers += 1
        if not ok:
            self.failures.append(f"{transport} {key[-3:]}: {detail}")

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def status_with(svc: ServiceProcess, key: str) -> int:
    return svc.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` held (polled), or fail after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def rotating(oip_repository: Path, tmp_path: Path) -> Iterator[tuple[ServiceProcess, SecretVolume]]:
    volume = keys_volume(tmp_path / "secret", OLD)
    env = {
        "CATDOG_MODEL_DIR": str(oip_repository),
        "CATDOG_API_KEYS_FILE": str(volume.path("keys.json")),
        "CATDOG_API_KEYS_RELOAD_S": str(RELOAD_S),
    }
    with ServiceProcess(env) as service:
        yield service, volume


def test_a_key_rotates_under_load_without_a_failed_request(rotating: tuple[ServiceProcess, SecretVolume]) -> None:
    svc, volume = rotating
    old, new = OLD["ci"][0], NEW["ci-next"][0]
    assert status_with(svc, new) == 401
    with LoadGenerator(svc, old) as load:
        wait_until(lambda: load.answers >= 10, 60)
        volume.publish({"keys.json": keys_document(BOTH)})  # step 1: the new key beside the old
        wait_until(lambda: status_with(svc, new) == 200, 30)
        load.key = new  # clients move to the new key
        before = load.answers
        wait_until(lambda: load.answers >= before + 10, 60)
        published = time.monotonic()
        volume.publish({"keys.json": keys_document(NEW)})  # step 2: the old key goes
        # Lazy checks: the first call after the interval reloads, so the old key is out within the interval (plus
        # the poll's own request time on a loaded machine).
        refused_after = wait_until(lambda: status_with(svc, old) == 401, 30)
        assert time.monotonic() - published <= RELOAD_S + 5.0, refused_after
        before = load.answers
        wait_until(lambda: load.answers >= before + 10, 60)
    assert load.failures == []
    assert load.answers > 30
    assert status_with(svc, new) == 200
    reloads = svc.wait_for_log(lambda r: r.get("event") == "api_keys_reloaded", count=2)
    assert len(reloads) >= 2


def test_a_broken_keys_file_keeps_the_old_keys(rotating: tuple[ServiceProcess, SecretVolume]) -> None:
    svc, volume = rotating
    old = OLD["ci"][0]
    for broken in (b'{"keys": [', b'{"keys": [{"name": "x", "sha256": "short", "scopes": ["infer"]}]}', b""):
        volume.publish({"keys.json": broken})
        failed = svc.wait_for_log(lambda r: r.get("event") == "api_keys_reload_failed", count=1, timeout=30)
        assert failed
        # Still the old keys, over and past the interval: never open, never locked.
        deadline = time.monotonic() + 2 * RELOAD_S
        while time.monotonic() < deadline:
            assert status_with(svc, old) == 200
            assert svc.client.get("/v1/models").status_code == 401
            time.sleep(0.1)
    failures = svc.wait_for_log(lambda r: r.get("event") == "api_keys_reload_failed", count=3, timeout=30)
    assert len(failures) == 3
    assert old not in svc.output()


@pytest.mark.parametrize("content", [b'{"keys": [', None], ids=["broken", "missing"])
def test_a_bad_keys_file_at_start_stops_start_up(oip_repository: Path, tmp_path: Path, content: bytes | None) -> None:
    """Never serve open (or locked) by accident: the process exits, the log says why, nothing listens."""
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_bytes(content)
    svc = ServiceProcess({"CATDOG_MODEL_DIR": str(oip_repository), "CATDOG_API_KEYS_FILE": str(path)})
    svc.start(wait=None)
    assert svc.proc is not None
    code = svc.proc.wait(120)
    assert code != 0
    assert svc.wait_for_log(lambda r: r.get("event") == "api_keys_file_invalid")
    with pytest.raises(httpx.TransportError):
        httpx.get(svc.base_url + "/livez", timeout=5)
    svc.stop()
