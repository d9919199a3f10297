"""catdog on a bucket: moto's real S3 server on loopback, reached through boto3's standard chain
(AWS_ENDPOINT_URL and static keys), with a bucket laid out as `aws s3 sync` lays a repository out. Serve, add a
version, corrupt one, remove one, take the server away (catdog keeps serving), and restart from the cache
with the server gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.access import bearer, keys_document
from tests.support.oip import red_jpeg
from tests.support.onnx_models import RED_IS_CAT, build_colour_classifier, write_version_dir
from tests.support.s3 import s3_server
from tests.support.server import ServiceProcess
from tests.support.waiting import wait_until

BUCKET = "ml-models"
KEY = "catdog_test-s3-key"
PREFIX = "catdog/prod"


def served_version(svc: ServiceProcess) -> str:
    response = svc.client.post("/v1/models/m/predict", files={"file": ("red.jpg", red_jpeg(), "image/jpeg")})
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def metric(svc: ServiceProcess, line_start: str) -> float:
    for line in svc.client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_a_bucket_rolls_out_fails_safe_and_survives_its_server(tmp_path: Path) -> None:
    local = tmp_path / "local"
    cache = tmp_path / "cache"
    keys = tmp_path / "keys.json"
    keys.write_bytes(keys_document({"ops": (KEY, ["admin", "infer", "metrics"])}))
    with s3_server() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        write_version_dir(local, "m", "1")
        s3.upload_tree(BUCKET, PREFIX, local)
        env = {
            **s3.env,
            "CATDOG_MODEL_DIR": f"s3://{BUCKET}/{PREFIX}",
            "CATDOG_MODEL_CONTROL": "poll",
            "CATDOG_MODEL_POLL_S": "0.3",
            "CATDOG_MODEL_CACHE_DIR": str(cache),
            "CATDOG_MODEL_DOWNLOAD_TIMEOUT_S": "5",
            "CATDOG_API_KEYS_FILE": str(keys),
        }
        svc = ServiceProcess(env)
        svc.client.headers.update(bearer(KEY))
        svc.start(timeout=120)
        try:
            assert served_version(svc) == "1"
            assert metric(svc, 'catdog_model_load_duration_seconds_count{model="m",phase="download"}') == 1
            # Add a version: uploaded, found by the next poll, fetched, warmed, then it serves.
            write_version_dir(local, "m", "2", model=build_colour_classifier(-RED_IS_CAT))
            s3.upload_tree(BUCKET, f"{PREFIX}/m/2", local / "m" / "2")
            wait_until(lambda: served_version(svc) == "2", what="version 2 serves")
            # Corrupt one: its file does not match its card; it never serves, version 2 goes on.
            bad = write_version_dir(local, "m", "3")
            (bad / "model.onnx").write_bytes(b"truncated upload")
            s3.upload_tree(BUCKET, f"{PREFIX}/m/3", bad)

            def entry(version: str) -> dict[str, str] | None:
                index = svc.client.post("/v2/repository/index").json()
                return next((e for e in index if e["name"] == "m" and e["version"] == version), None)

            # (A poll between the two uploads sees the card without its graph: "missing file", retried at once
            # when the files change.)
            wait_until(lambda: (e := entry("3")) and "sha256" in e["reason"], what="version 3 refused")
            assert entry("3")["state"] == "UNAVAILABLE"  # type: ignore[index]
            assert served_version(svc) == "2"
            # Counted as a verification failure, never as loaded. The same files are tried again after a backoff
            # (0.3 s, 0.6 s, ... here), so a slow machine may already have counted a second try.
            assert metric(svc, 'catdog_model_loads_total{model="m",outcome="failed_verify",version="3"}') >= 1
            assert metric(svc, 'catdog_model_loads_total{model="m",outcome="loaded",version="3"}') == 0
            # Remove one: version 2's objects go, version 3 is still broken, so version 1 serves again.
            s3.delete_prefix(BUCKET, f"{PREFIX}/m/2/")
            s3.delete_prefix(BUCKET, f"{PREFIX}/m/3/")
            wait_until(lambda: served_version(svc) == "1", what="version 1 serves again")
            wait_until(lambda: entry("2") is not None and entry("2")["state"] == "UNAVAILABLE", what="v2 closed")  # type: ignore[index]
            # Take the server away: polls fail, nothing that serves changes.
            s3.stop()
            svc.wait_for_log(lambda r: r.get("event") == "model_source_offline", timeout=30)
            for _ in range(5):
                assert served_version(svc) == "1"
            assert svc.client.get("/readyz").status_code == 200
        finally:
            svc.stop()
    # Restart with the server gone: the cache holds version 1 and serves it without the network.
    offline = ServiceProcess(env)
    offline.client.headers.update(bearer(KEY))
    with offline.start(timeout=120):
        assert served_version(offline) == "1"
        assert offline.wait_for_log(lambda r: r.get("event") == "model_source_offline")
        assert metric(offline, 'catdog_model_load_duration_seconds_count{model="m",phase="download"}') == 0
