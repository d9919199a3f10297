"""Access control over REST against the real service: every call type without a key, with an unknown key,
with a key of the wrong scope and with the right one (httpx, tritonclient's HTTP client with headers, a raw
socket for `Expect: 100-continue`); probes and the page stay open; refusals are counted by reason; the access
line names the key and no log line holds a key or a digest. Without a keys file: inference open, admin refused."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.support.access import ADMIN, INFER, KEYS, METRICS, UNKNOWN, bearer, keys_volume
from tests.support.oip import red_jpeg
from tests.support.server import ServiceProcess


def v2_infer_body() -> dict[str, Any]:
    data = base64.b64encode(red_jpeg()).decode()
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [data]}]}


# (method, path, scope, request kwargs): one of each call type the service has.
CALLS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", "/predict/pretrained", "infer", {"files": {"file": ("red.jpg", red_jpeg(), "image/jpeg")}}),
    ("POST", "/v1/models/scratch/predict", "infer", {"content": red_jpeg(), "headers": {"Content-Type": "image/jpeg"}}),
    ("GET", "/v1/models", "infer", {}),
    ("GET", "/v1/models/pretrained", "infer", {}),
    ("GET", "/version", "infer", {}),
    ("GET", "/v2", "infer", {}),
    ("GET", "/v2/models/pretrained", "infer", {}),
    ("GET", "/v2/models/pretrained/ready", "infer", {}),
    ("POST", "/v2/models/pretrained/infer", "infer", {"json": "v2"}),
    ("GET", "/metrics", "metrics", {}),
    ("POST", "/v2/repository/index", "admin", {"json": {}}),
    ("POST", "/v2/repository/models/pretrained/load", "admin", {"json": {}}),
    ("POST", "/v2/repository/models/pretrained/unload", "admin", {"json": {}}),
    ("POST", "/v2/systemsharedmemory/region/r0/register", "admin", {"json": {}}),
    ("POST", "/v2/cudasharedmemory/region/r0/unregister", "admin", {"json": {}}),
    ("POST", "/v2/trace/setting", "admin", {"json": {}}),
    ("POST", "/v2/logging", "admin", {"json": {}}),
    ("GET", "/v2/models/pretrained/config", "infer", {}),
    ("GET", "/v2/models/pretrained/stats", "infer", {}),
    ("GET", "/v2/models/stats", "infer", {}),
]
KEY_OF_SCOPE = {"infer": INFER, "admin": ADMIN, "metrics": METRICS}
OPEN = ["/livez", "/readyz", "/v2/health/live", "/v2/health/ready", "/", "/docs", "/openapi.json"]


@pytest.fixture(scope="module")
def keyed(oip_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    volume = keys_volume(tmp_path_factory.mktemp("keys"))
    env = {"CATDOG_MODEL_DIR": str(oip_repository), "CATDOG_API_KEYS_FILE": str(volume.path("keys.json"))}
    with ServiceProcess(env) as service:
        yield service


def call(
    svc: ServiceProcess, method: str, path: str, kwargs: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    options = dict(kwargs)
    if options.get("json") == "v2":
        options["json"] = v2_infer_body()
    options["headers"] = {**options.get("headers", {}), **headers}
    return svc.client.request(method, path, **options)


def assert_refused(response: httpx.Response, status: int, path: str) -> None:
    assert response.status_code == status, (path, response.status_code, response.text)
    body = response.json()
    if path.startswith("/v2"):
        assert isinstance(body["error"], str) and body["error"]  # the protocol's own shape
    else:
        assert body["error"]["code"] == ("unauthenticated" if status == 401 else "forbidden")
        assert body["error"]["request_id"] == response.headers["x-request-id"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    if status == 403:
        assert 'error="insufficient_scope"' in challenge


@pytest.mark.parametrize(("method", "path", "scope", "kwargs"), CALLS, ids=[f"{c[0]} {c[1]}" for c in CALLS])
def test_every_call_needs_a_key_of_its_scope(
    keyed: ServiceProcess, method: str, path: str, scope: str, kwargs: dict[str, Any]
) -> None:
    assert_refused(call(keyed, method, path, kwargs, {}), 401, path)
    assert_refused(call(keyed, method, path, kwargs, bearer(UNKNOWN)), 401, path)
    assert_refused(call(keyed, method, path, kwargs, {"Authorization": "Basic " + INFER}), 401, path)
    for other, key in KEY_OF_SCOPE.items():
        if other != scope:
            assert_refused(call(keyed, method, path, kwargs, bearer(key)), 403, path)
            assert_refused(call(keyed, method, path, kwargs, {"X-API-Key": key}), 403, path)
    for headers in (bearer(KEY_OF_SCOPE[scope]), {"X-API-Key": KEY_OF_SCOPE[scope]}):
        allowed = call(keyed, method, path, kwargs, headers)
        if scope == "admin" and path.startswith("/v2/repository/"):
            # Past the door, the repository API (tests/service/models): the index answers; load and unload act
            # only in explicit model control mode (this service runs `none`): 400 model_control_mode.
            assert allowed.status_code == (200 if path.endswith("/index") else 400), allowed.text
            continue
        if scope == "admin":
            # Past the door: catdog serves none of these.
            assert allowed.status_code in (404, 405, 501), allowed.text
            continue
        assert allowed.status_code == 200, (path, allowed.text)
        if path.startswith("/predict") or path.endswith("/predict"):
            assert allowed.json()["label"] == "cat"
        if path == "/metrics":
            assert "catdog_access_refused_total" in allowed.text


def test_probes_and_the_page_stay_open(keyed: ServiceProcess) -> None:
    for path in OPEN:
        assert keyed.client.get(path).status_code == 200, path
    page = keyed.client.get("/").text
    script = keyed.client.get("/static/app.js")
    assert script.status_code == 200 and "sessionStorage" in script.text
    assert "static/app.js" in page


def test_tritonclient_http_sends_the_key_as_a_header(keyed: ServiceProcess) -> None:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{keyed.port}")
    image = triton_http.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([red_jpeg()], dtype=np.object_))
    assert client.is_server_live()  # a probe: no key
    with pytest.raises(InferenceServerException) as refused:
        client.infer("pretrained", [image])
    assert "API key" in str(refused.value)
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("pretrained", headers=bearer(ADMIN))
    result = client.infer("pretrained", [image], headers=bearer(INFER))
    assert list(result.as_numpy("label")) == [b"cat"]
    assert client.get_model_metadata("pretrained", headers={"X-API-Key": INFER})["name"] == "pretrained"
    client.close()


def test_a_refusal_never_reads_the_body(keyed: ServiceProcess) -> None:
    """Headers only, announcing a 10 MB body with Expect: 100-continue: the 401 comes back at once, no 100."""
    with socket.create_connection(("127.0.0.1", keyed.port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict/pretrained HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 401")
    assert b"connection: close" in head
    assert b"100 continue" not in head


def test_the_access_line_names_the_key_and_no_log_holds_a_key_or_digest(keyed: ServiceProcess) -> None:
    keyed.client.get("/v1/models", headers={"X-Request-ID": "access-named", **bearer(INFER)})
    keyed.client.get("/v1/models", headers={"X-Request-ID": "access-wrong", **bearer(METRICS)})
    keyed.client.get("/v1/models", headers={"X-Request-ID": "access-none"})
    lines = {}
    for request_id in ("access-named", "access-wrong", "access-none"):
        found = keyed.wait_for_log(lambda r, rid=request_id: r.get("request_id") == rid and r.get("event") == "request")
        assert found, request_id
        lines[request_id] = found[0]
    assert lines["access-named"]["key"] == "ci" and lines["access-named"]["status"] == 200
    assert lines["access-wrong"]["key"] == "prometheus" and lines["access-wrong"]["error"] == "forbidden"
    assert "key" not in lines["access-none"] and lines["access-none"]["error"] == "unauthenticated"
    output = keyed.output()
    for key, _ in KEYS.values():
        assert key not in output
        assert hashlib.sha256(key.encode()).hexdigest() not in output
    assert UNKNOWN not in output


def test_refusals_are_counted_by_reason(keyed: ServiceProcess) -> None:
    def refused() -> dict[str, float]:
        text = keyed.client.get("/metrics", headers=bearer(METRICS)).text
        found = re.findall(r'^catdog_access_refused_total\{reason="(\w+)",transport="rest"\} (\S+)$', text, re.M)
        return {reason: float(value) for reason, value in found}

    before = refused()
    keyed.client.get("/v1/models")
    keyed.client.get("/v1/models", headers=bearer(UNKNOWN))
    keyed.client.get("/v1/models", headers=bearer(UNKNOWN))
    keyed.client.get("/v1/models", headers=bearer(ADMIN))
    after = refused()
    for reason, added in {"missing_key": 1, "unknown_key": 2, "wrong_scope": 1}.items():
        assert after[reason] - before.get(reason, 0) == added, reason
    text = keyed.client.get("/metrics", headers=bearer(METRICS)).text
    assert "catdog_api_keys 3.0" in text


def test_without_a_keys_file_inference_is_open_and_admin_is_refused(oip_service: ServiceProcess) -> None:
    client = oip_service.client
    answer = client.post("/predict/pretrained", files={"file": ("red.jpg", red_jpeg(), "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["label"] == "cat"
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/models").status_code == 200
    for method, path, scope, kwargs in CALLS:
        if scope == "admin":
            for headers in ({}, bearer(ADMIN)):
                response = call(oip_service, method, path, kwargs, headers)
                assert_refused(response, 403, path)
                assert "CATDOG_API_KEYS_FILE" in response.json()["error"]
