"""Start the real service as a subprocess on a free loopback port and talk HTTP to it."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loadtest.ports import free_port
from tests.support.images import RED, encode, solid

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """`catdog serve` in a child process; its stdout (JSON log lines) is kept in a file for assertions."""

    def __init__(
        self, env: dict[str, str] | None = None, args: list[str] | None = None, *, https: ssl.SSLContext | None = None
    ) -> None:
        """`https`: the client context to talk TLS with (the service then needs CATDOG_TLS_* in `env`)."""
        self.port = free_port()
        self.base_url = f"{'https' if https else 'http'}://127.0.0.1:{self.port}"
        # A gRPC port of its own too (the default 8001 would clash between services running side by side).
        self.env = {**os.environ, "CATDOG_LOG_FORMAT": "json", "CATDOG_GRPC_PORT": str(free_port()), **(env or {})}
        self.grpc_port = int(self.env["CATDOG_GRPC_PORT"])
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.args = args or []
        self._log = tempfile.NamedTemporaryFile(prefix="catdog-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base_url, timeout=30.0, verify=https or True)

    def start(self, *, wait: str | None = "ready", timeout: float = 60.0) -> ServiceProcess:
        """Start and wait until `/livez` (wait="live") or `/readyz` (wait="ready") answers 200."""
        cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, *self.args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
        if wait:
            self.wait_for("/livez" if wait == "live" else "/readyz", timeout=timeout)
        return self

    def wait_for(self, path: str, *, timeout: float = 60.0, status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.client.get(path).status_code == status:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{path} did not answer {status} within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """Every stdout line that is a JSON object."""
        records = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def wait_for_log(
        self, match: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The log records that `match`, once there are `count` of them.

        The access line is written after the response has gone out, so a client can hold its answer before the
        line for it is in the file: poll instead of reading once.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.logs() if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def assert_still_serving(svc: ServiceProcess) -> None:
    """After a refused request, the next valid one (a red JPEG: "cat" for the tiny colour models) still works."""
    response = svc.client.post(
        "/predict/pretrained", files={"file": ("ok.jpg", encode(solid(RED, (64, 48)), "JPEG"), "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "cat"
