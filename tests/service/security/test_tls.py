"""TLS material (service/security/tls.py) against a real TLS listener in this process: rotation, half-rotated
pairs, mutual TLS, the TLS 1.2 floor."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest

from service.security.tls import RotatingContext, TlsFiles, server_context
from tests.support.certs import Authority, SecretVolume, issue, make_ca


def tls_volume(root: Path, ca: Authority, *, client_ca: Authority | None = None) -> tuple[SecretVolume, TlsFiles]:
    volume = SecretVolume(root)
    leaf = issue(ca, "catdog")
    files = {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem}
    if client_ca is not None:
        files["ca.crt"] = client_ca.pem
    volume.publish(files)
    ca_path = volume.path("ca.crt") if client_ca is not None else None
    return volume, TlsFiles(volume.path("tls.crt"), volume.path("tls.key"), ca_path)


def client_context(ca: Authority, tmp_path: Path, *, cert: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca.pem.decode())
    if cert is not None:
        (tmp_path / "client.crt").write_bytes(cert[0])
        (tmp_path / "client.key").write_bytes(cert[1])
        context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    return context


async def serial_seen(port: int, client: ssl.SSLContext) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        data = await asyncio.wait_for(reader.read(2), 10)
        assert data == b"ok"
        peer = writer.get_extra_info("peercert")
        return int(peer["serialNumber"], 16)
    finally:
        writer.close()


async def serve(context: ssl.SSLContext) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


def test_a_rotated_certificate_is_served_to_new_handshakes(tmp_path: Path) -> None:
    ca = make_ca()
    volume, files = tls_volume(tmp_path / "tls", ca)
    context = RotatingContext(files, reload_s=0.05)()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2

    async def scenario() -> None:
        server = await serve(context)
        port = server.sockets[0].getsockname()[1]
        client = client_context(ca, tmp_path)
        before = await serial_seen(port, client)
        new = issue(ca, "catdog")
        volume.publish({"tls.crt": new.cert_pem, "tls.key": new.key_pem})
        deadline = time.monotonic() + 20
        seen = before
        while seen != new.serial and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            seen = await serial_seen(port, client)
        assert seen == new.serial != before
        # Half-rotated (a new certificate beside the old key): refused to load, the last good pair serves on.
        other = issue(ca, "catdog")
        volume.publish({"tls.crt": other.cert_pem, "tls.key": new.key_pem})
        await asyncio.sleep(0.2)
        for _ in range(3):
            assert await serial_seen(port, client) == new.serial
        server.close()

    asyncio.run(scenario())


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    ca, client_ca = make_ca(), make_ca("clients")
    _, files = tls_volume(tmp_path / "tls", ca, client_ca=client_ca)
    context = RotatingContext(files, reload_s=1.0)()
    stranger = make_ca("stranger")

    async def scenario() -> None:
        server = await serve(context)
        port = server.sockets[0].getsockname()[1]
        good = issue(client_ca, "client", server=False)
        assert await serial_seen(port, client_context(ca, tmp_path, cert=(good.cert_pem, good.key_pem)))
        wrong = issue(stranger, "x", server=False)
        (tmp_path / "other").mkdir()
        for client in (
            client_context(ca, tmp_path),  # no certificate
            client_context(ca, tmp_path / "other", cert=(wrong.cert_pem, wrong.key_pem)),  # another CA's
        ):
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, AssertionError)):
                await serial_seen(port, client)
        server.close()

    asyncio.run(scenario())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_below_1_2_is_refused(tmp_path: Path) -> None:
    ca = make_ca()
    _, files = tls_volume(tmp_path / "tls", ca)
    context = server_context(files)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client CA: no client certificate asked for

    async def scenario() -> None:
        server = await serve(context)
        port = server.sockets[0].getsockname()[1]
        old = client_context(ca, tmp_path)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await serial_seen(port, old)
        server.close()

    asyncio.run(scenario())


def test_a_mismatched_pair_is_refused_at_load(tmp_path: Path) -> None:
    ca = make_ca()
    a, b = issue(ca, "a"), issue(ca, "b")
    (tmp_path / "c.pem").write_bytes(a.cert_pem)
    (tmp_path / "k.pem").write_bytes(b.key_pem)
    with pytest.raises(ssl.SSLError):
        server_context(TlsFiles(tmp_path / "c.pem", tmp_path / "k.pem"))
