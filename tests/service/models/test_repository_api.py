"""Versioned paths and the repository API against the real service: explicit mode loads and unloads on request,
every answer names the version that computed it, and the API is refused without the admin token, off without a
token file, and (load / unload) outside explicit mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from tests.support.access import keys_document
from tests.support.oip import red_jpeg
from tests.support.onnx_models import RED_IS_CAT, build_colour_classifier, write_version_dir
from tests.support.server import ServiceProcess
from tests.support.waiting import wait_until

TOKEN = "catdog_test-models-admin-key"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def keys_file(folder: Path) -> Path:
    """An API keys file (service/security/) with one key allowed to manage models and to classify."""
    path = folder / "keys.json"
    path.write_bytes(keys_document({"ops": (TOKEN, ["admin", "infer", "metrics"])}))
    return path


def predict(svc: ServiceProcess, path: str) -> tuple[int, dict[str, object]]:
    response = svc.client.post(path, files={"file": ("red.jpg", red_jpeg(), "image/jpeg")})
    return response.status_code, response.json()


def index(svc: ServiceProcess) -> list[dict[str, str]]:
    response = svc.client.post("/v2/repository/index", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def explicit(tmp_path: Path) -> Iterator[tuple[ServiceProcess, Path]]:
    repo = tmp_path / "repo"
    write_version_dir(repo, "m", "1")
    write_version_dir(repo, "idle", "1")
    env = {
        "CATDOG_MODEL_DIR": str(repo),
        "CATDOG_MODEL_CONTROL": "explicit",
        "CATDOG_MODEL_LOAD": "m",
        "CATDOG_API_KEYS_FILE": str(keys_file(tmp_path)),
    }
    svc = ServiceProcess(env)
    svc.client.headers.update(ADMIN)
    with svc.start():
        yield svc, repo


def test_explicit_mode_rolls_out_and_back_through_the_api(explicit: tuple[ServiceProcess, Path]) -> None:
    svc, repo = explicit
    assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "1"
    assert {(e["name"], e["version"], e["state"]) for e in index(svc)} == {
        ("m", "1", "READY"),
        ("idle", "", "UNAVAILABLE"),
    }
    # Version 2 (red is a dog) beside 1, both served: policy all; clients choose with versions/{v}.
    write_version_dir(repo, "m", "2", model=build_colour_classifier(-RED_IS_CAT))
    (repo / "m" / "version_policy.json").write_text(json.dumps({"all": {}}))
    assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "1"  # explicit: nothing moves by itself
    assert svc.client.post("/v2/repository/models/m/load", headers=ADMIN).status_code == 200
    status, body = predict(svc, "/v1/models/m/versions/1/predict")
    assert (status, body["model_version"], body["label"]) == (200, "1", "cat")
    status, body = predict(svc, "/v1/models/m/versions/2/predict")
    assert (status, body["model_version"], body["label"]) == (200, "2", "dog")
    assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "2"  # unversioned: the latest
    meta = svc.client.get("/v2/models/m").json()
    assert meta["versions"] == ["1", "2"]
    assert svc.client.get("/v2/models/m/versions/1/ready").status_code == 200
    with grpc.insecure_channel(svc.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.ModelInferRequest(model_name="m", model_version="1")
        request.inputs.add(name="image", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(len(red_jpeg()).to_bytes(4, "little") + red_jpeg())
        key = (("authorization", f"Bearer {TOKEN}"),)
        assert stub.ModelInfer(request, timeout=30, metadata=key).model_version == "1"
        request.model_version = "7"
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=30, metadata=key)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    # Roll back without a redeploy: the policy back to latest 1 on version 1, loaded again.
    (repo / "m" / "version_policy.json").write_text(json.dumps({"specific": {"versions": ["1"]}}))
    assert svc.client.post("/v2/repository/models/m/load", headers=ADMIN).status_code == 200
    assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "1"
    status, body = predict(svc, "/v1/models/m/versions/2/predict")
    assert status in (404, 503)
    wait_until(
        lambda: ("m", "2", "UNAVAILABLE") in {(e["name"], e["version"], e["state"]) for e in index(svc)},
        what="version 2 closed",
    )
    # Unload: nothing of m serves, the index says so, the other models are untouched.
    assert svc.client.post("/v2/repository/models/m/unload", headers=ADMIN).status_code == 200
    status, body = predict(svc, "/v1/models/m/predict")
    assert status == 503 and body["error"]["code"] == "not_ready"  # type: ignore[index]
    assert svc.client.post("/v2/repository/index", headers=ADMIN, json={"ready": True}).json() == []
    assert svc.client.get("/readyz").status_code == 200  # explicit mode: nothing asked, nothing to wait for
    reloaded = svc.client.post("/v2/repository/models/idle/load", headers=ADMIN)
    assert reloaded.status_code == 200
    assert predict(svc, "/v1/models/idle/predict")[0] == 200
    loads = [r for r in svc.logs() if r.get("event") == "model_version_state"]
    assert {(r["model"], r["version"], r["state"]) for r in loads} >= {("m", "2", "READY"), ("m", "2", "UNLOADING")}


def test_failures_are_clear_and_change_nothing(explicit: tuple[ServiceProcess, Path]) -> None:
    svc, repo = explicit
    broken = write_version_dir(repo, "bad", "1")
    (broken / "model.onnx").write_bytes(b"corrupt")
    response = svc.client.post("/v2/repository/models/bad/load", headers=ADMIN)
    assert response.status_code == 400 and "sha256" in response.json()["error"]
    entry = next(e for e in index(svc) if e["name"] == "bad")
    assert entry["state"] == "UNAVAILABLE" and "sha256" in entry["reason"]
    missing = svc.client.post("/v2/repository/models/nope/load", headers=ADMIN)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    parameters = svc.client.post(
        "/v2/repository/models/m/load", headers=ADMIN, json={"parameters": {"file:1/model.onnx": "AAAA"}}
    )
    assert parameters.status_code == 400
    not_json = svc.client.post("/v2/repository/index", headers=ADMIN, content=b"{nope")
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        with httpx.Client(base_url=svc.base_url, headers=headers) as stranger:  # access control's door refuses
            refused = stranger.post("/v2/repository/index")
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert stranger.post("/v2/repository/models/m/unload").status_code == 401
    assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "1"  # still serving, unchanged


def test_without_a_keys_file_the_api_is_off_and_outside_explicit_mode_load_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_version_dir(repo, "m", "1")
    with ServiceProcess({"CATDOG_MODEL_DIR": str(repo)}) as svc:
        off = svc.client.post("/v2/repository/index", headers=ADMIN)
        assert off.status_code == 403 and "CATDOG_API_KEYS_FILE" in off.json()["error"]
    env = {
        "CATDOG_MODEL_DIR": str(repo),
        "CATDOG_MODEL_CONTROL": "poll",
        "CATDOG_API_KEYS_FILE": str(keys_file(tmp_path)),
    }
    svc = ServiceProcess(env)
    svc.client.headers.update(ADMIN)
    with svc.start():
        assert [e["state"] for e in index(svc)] == ["READY"]  # the index answers in every mode
        for action in ("load", "unload"):
            refused = svc.client.post(f"/v2/repository/models/m/{action}", headers=ADMIN)
            assert refused.status_code == 400 and "explicit" in refused.json()["error"]
        assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "1"


def test_the_repository_api_over_grpc(explicit: tuple[ServiceProcess, Path]) -> None:
    """Triton's RepositoryIndex / RepositoryModelLoad / RepositoryModelUnload, the token in `authorization`."""
    svc, repo = explicit
    token = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(svc.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        index = stub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=token, timeout=30)
        assert {(m.name, m.version, m.state) for m in index.models} == {
            ("m", "1", "READY"),
            ("idle", "", "UNAVAILABLE"),
        }
        ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=token, timeout=30)
        assert [(m.name, m.state) for m in ready.models] == [("m", "READY")]
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=30)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        write_version_dir(repo, "m", "2")
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="m"), metadata=token, timeout=60)
        assert predict(svc, "/v1/models/m/predict")[1]["model_version"] == "2"
        with pytest.raises(grpc.RpcError) as missing:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="nope"), metadata=token, timeout=60)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="m"), metadata=token, timeout=60)
        assert predict(svc, "/v1/models/m/predict")[0] == 503
