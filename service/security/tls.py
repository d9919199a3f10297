"""TLS material for both ports, re-read when cert-manager (or anyone) replaces the files.

- HTTP (uvicorn): `RotatingContext` is uvicorn's `ssl_context_factory`. The context it returns serves the first
  certificate and, on each ClientHello, hands the handshake the newest context (`sni_callback`, called with or
  without SNI): a change of the files builds a whole new context, so a half-rotated pair (new certificate, old
  key) fails to load and the old one keeps serving instead of a mismatched mix. Picklable (plain paths), so
  uvicorn's worker processes build their own.
- gRPC (grpc.aio): `grpc_server_credentials` uses `grpc.dynamic_ssl_server_credentials`, whose fetcher gRPC
  calls on each new handshake; it answers a new certificate configuration only when the files changed.

Both: TLS 1.2 or newer (gRPC's own floor is 1.2), and with a client CA file, mutual TLS: a client without a
certificate signed by that CA is refused in the handshake. Files are looked at no more than once per interval.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from service.security.watch import Reloading


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def paths(self) -> list[Path]:
        return [self.cert, self.key, *([self.client_ca] if self.client_ca else [])]


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context with modern defaults; raises (ssl.SSLError, OSError) on unreadable or mismatched files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    if files.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=files.client_ca)
    return context


class RotatingContext:
    """uvicorn's `ssl_context_factory(config, default_factory)`."""

    def __init__(self, files: TlsFiles, reload_s: float) -> None:
        self.files = files
        self.reload_s = reload_s

    def __call__(self, config: Any = None, default_factory: Any = None) -> ssl.SSLContext:
        files = self.files
        reloading = Reloading("tls", files.paths, lambda: server_context(files), self.reload_s)
        front = reloading.value

        def on_hello(connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
            newest = reloading.current()
            if newest is not context:
                connection.context = newest

        front.sni_callback = on_hello  # stays on the first context: OpenSSL calls the one the connection began with
        return front


def _certificate_configuration(files: TlsFiles) -> Any:
    """gRPC's form of the files, checked first by loading them as a Python context (gRPC itself would accept a
    mismatched pair and fail every handshake)."""
    server_context(files)
    cert, key = files.cert.read_bytes(), files.key.read_bytes()
    ca = files.client_ca.read_bytes() if files.client_ca else None
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def grpc_server_credentials(files: TlsFiles, reload_s: float) -> grpc.ServerCredentials:
    reloading = Reloading("grpc_tls", files.paths, lambda: _certificate_configuration(files), reload_s)
    served = [reloading.value]

    def fetch() -> Any:
        newest = reloading.current()
        if newest is served[0]:
            return None  # no change: keep serving what gRPC has
        served[0] = newest
        return newest

    return grpc.dynamic_ssl_server_credentials(
        reloading.value, fetch, require_client_authentication=files.client_ca is not None
    )


def tls_files(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsFiles | None:
    """The settings' TLS files, or None for plain text (Settings checks that cert and key come together)."""
    if cert is None or key is None:
        return None
    return TlsFiles(cert, key, client_ca)
