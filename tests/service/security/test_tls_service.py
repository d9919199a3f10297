"""TLS on both ports of the real service, with certificates made in the test: HTTPS and gRPC over TLS with
keys (httpx, tritonclient's gRPC client, grpc.health.v1), plain text refused on both ports, a certificate
rotated by the kubelet's ..data swap picked up by new handshakes on both ports, and mutual TLS refusing a client
without a certificate (or with one from another CA) and accepting one with it."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.access import INFER, bearer, keys_volume
from tests.support.certs import Authority, Issued, SecretVolume, issue, make_ca
from tests.support.oip import red_jpeg
from tests.support.server import ServiceProcess

RELOAD_S = 0.5


def client_context(ca: Authority, folder: Path, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca.pem.decode())
    if client is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "client.crt").write_bytes(client.cert_pem)
        (folder / "client.key").write_bytes(client.key_pem)
        context.load_cert_chain(folder / "client.crt", folder / "client.key")
    return context


def served_serial(port: int, ca: Authority, alpn: str) -> int:
    """The serial number of the certificate a new handshake gets on this port."""
    context = ssl.create_default_context(cadata=ca.pem.decode())
    context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return int(tls.getpeercert()["serialNumber"], 16)


class TlsService:
    def __init__(self, root: Path, repository: Path, *, mutual: bool) -> None:
        self.ca = make_ca()
        self.client_ca = make_ca("clients") if mutual else None
        self.leaf = issue(self.ca, "catdog")
        self.volume = SecretVolume(root / "tls")
        self.publish(self.leaf)
        keys = keys_volume(root / "keys")
        env = {
            "CATDOG_MODEL_DIR": str(repository),
            "CATDOG_API_KEYS_FILE": str(keys.path("keys.json")),
            "CATDOG_TLS_CERT_FILE": str(self.volume.path("tls.crt")),
            "CATDOG_TLS_KEY_FILE": str(self.volume.path("tls.key")),
            "CATDOG_TLS_RELOAD_S": str(RELOAD_S),
        }
        self.client_cert = issue(self.client_ca, "client", server=False) if self.client_ca else None
        if self.client_ca is not None:
            env["CATDOG_TLS_CLIENT_CA_FILE"] = str(self.volume.path("ca.crt"))
        self.svc = ServiceProcess(env, https=client_context(self.ca, root / "client", self.client_cert))

    def publish(self, leaf: Issued) -> None:
        files = {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem}
        if self.client_ca is not None:
            # Clients' CA, and the server's own issuer (the chart's layout: the pod's certificate is a client's too).
            files["ca.crt"] = self.client_ca.pem + self.ca.pem
        self.volume.publish(files)

    def grpc_credentials(self, client: Issued | None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.pem,
            private_key=client.key_pem if client else None,
            certificate_chain=client.cert_pem if client else None,
        )


@pytest.fixture(scope="module")
def tls(oip_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsService]:
    service = TlsService(tmp_path_factory.mktemp("tls"), oip_repository, mutual=False)
    with service.svc:
        yield service


@pytest.fixture(scope="module")
def mtls(oip_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsService]:
    service = TlsService(tmp_path_factory.mktemp("mtls"), oip_repository, mutual=True)
    with service.svc:
        yield service


def health(channel: grpc.Channel) -> int:
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    return int(answer.status)


def test_https_and_grpc_tls_serve_with_keys(tls: TlsService, tmp_path: Path) -> None:
    svc = tls.svc
    assert svc.base_url.startswith("https://")
    assert svc.client.get("/readyz").status_code == 200
    assert svc.client.get("/v1/models").status_code == 401
    answer = svc.client.post(
        "/predict/pretrained", content=red_jpeg(), headers={"Content-Type": "image/jpeg", **bearer(INFER)}
    )
    assert answer.status_code == 200 and answer.json()["label"] == "cat"
    with grpc.secure_channel(svc.grpc_target, tls.grpc_credentials(None)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    (tmp_path / "ca.pem").write_bytes(tls.ca.pem)
    client = triton.InferenceServerClient(svc.grpc_target, ssl=True, root_certificates=str(tmp_path / "ca.pem"))
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([red_jpeg()], dtype=np.object_))
    result = client.infer("pretrained", [image], headers={"authorization": f"Bearer {INFER}"})
    assert list(result.as_numpy("label")) == [b"cat"]
    client.close()


def test_plain_text_is_refused_on_both_ports(tls: TlsService) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls.svc.port}/livez", timeout=10)
    with grpc.insecure_channel(tls.svc.grpc_target) as channel, pytest.raises(grpc.RpcError) as refused:
        health(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_rotated_certificate_is_picked_up_on_both_ports(tls: TlsService) -> None:
    svc = tls.svc
    before = tls.leaf.serial
    assert served_serial(svc.port, tls.ca, "http/1.1") == before
    assert served_serial(svc.grpc_port, tls.ca, "h2") == before
    with grpc.secure_channel(svc.grpc_target, tls.grpc_credentials(None)) as old_channel:
        assert health(old_channel) == health_pb2.HealthCheckResponse.SERVING
        rotated = issue(tls.ca, "catdog")
        tls.publish(rotated)
        deadline = time.monotonic() + 30
        seen = {"http": before, "grpc": before}
        while set(seen.values()) != {rotated.serial} and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = {
                "http": served_serial(svc.port, tls.ca, "http/1.1"),
                "grpc": served_serial(svc.grpc_port, tls.ca, "h2"),
            }
        assert seen == {"http": rotated.serial, "grpc": rotated.serial}
        assert health(old_channel) == health_pb2.HealthCheckResponse.SERVING  # connections made before go on
    tls.leaf = rotated
    assert svc.client.get("/readyz").status_code == 200
    assert svc.wait_for_log(lambda r: r.get("event") == "tls_reloaded")
    assert svc.wait_for_log(lambda r: r.get("event") == "grpc_tls_reloaded")


def test_mutual_tls_needs_a_client_certificate_on_both_ports(mtls: TlsService, tmp_path: Path) -> None:
    svc = mtls.svc
    assert svc.client.get("/readyz").status_code == 200  # the fixture's client holds a certificate
    assert mtls.client_cert is not None
    stranger = issue(make_ca("stranger"), "client", server=False)
    for name, client in (("none", None), ("stranger", stranger)):
        context = client_context(mtls.ca, tmp_path / name, client)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://127.0.0.1:{svc.port}/livez", verify=context, timeout=10)
        with (
            grpc.secure_channel(svc.grpc_target, mtls.grpc_credentials(client)) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            health(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, name
    with grpc.secure_channel(svc.grpc_target, mtls.grpc_credentials(mtls.client_cert)) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        infer = channel.unary_unary("/inference.GRPCInferenceService/ServerMetadata")
        with pytest.raises(grpc.RpcError) as no_key:
            infer(b"", timeout=10)
        assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED  # a certificate is not a key
    answer = svc.client.get("/v1/models", headers=bearer(INFER))
    assert answer.status_code == 200


@pytest.mark.parametrize("which", ["tls", "mtls"])
def test_the_exec_probe_passes_over_tls_and_mutual_tls(which: str, request: pytest.FixtureRequest) -> None:
    """`catdog probe` is what the chart runs where the kubelet's own probes cannot (gRPC with TLS, mutual TLS)."""
    service: TlsService = request.getfixturevalue(which)
    env = {**service.svc.env, "CATDOG_PORT": str(service.svc.port)}
    for path, expected in (("/readyz", 0), ("/livez", 0), ("/v1/models", 1)):
        run = subprocess.run(
            [sys.executable, "-m", "service", "probe", path], env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == expected, (path, run.stderr)
    assert "401" in run.stderr
