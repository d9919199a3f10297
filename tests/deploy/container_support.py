"""Build and run the real image with podman (runc, host network) on the local stand-in base.

No registry can be reached here, so `python:3.11-slim` is replaced by `localhost/python:3.11-slim`, which
scripts/build-standin-base.sh makes with debootstrap (cached: it is built once per machine). Everything else is
the real thing: the repository's Dockerfile and .dockerignore, podman build, podman run.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.ports import free_port
from tests.support.onnx_models import write_test_repository
from tests.support.server import REPO_ROOT

STANDIN_BASE = "localhost/python:3.11-slim"
IMAGE = "localhost/catdog:test"
IMAGE_SIZE_LIMIT = 700 * 1000 * 1000
"""Upper bound for the image on the stand-in base (~200 MB base + ~220 MB venv + models)."""

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""

# What the .dockerignore allow-list lets through, for the fallback context (see `build_context`).
_CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "scripts/runtime-requirements.py")


def real_models_present() -> bool:
    """True once the repository ships its models (the image then classifies real photos)."""
    return (REPO_ROOT / "models" / "pretrained" / "model.onnx").is_file()


@functools.cache
def podman_env() -> dict[str, str]:
    """Environment for podman/podman-compose: runc and ulimits this host allows (crun fails here)."""
    conf = Path(tempfile.mkdtemp(prefix="catdog-podman-")) / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def ensure_standin_base() -> float:
    """Build the stand-in base unless present; seconds spent."""
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-standin-base.sh"), STANDIN_BASE],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"stand-in base failed:\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - started


def build_context() -> Path:
    """The repository itself once it has models/; before that, a copy of what the image needs plus a tiny
    model repository (the same Dockerfile and .dockerignore either way)."""
    if real_models_present():
        return REPO_ROOT
    ctx = Path(tempfile.mkdtemp(prefix="catdog-context-"))
    for rel in _CONTEXT_FILES:
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, ctx / rel)
    shutil.copytree(REPO_ROOT / "service", ctx / "service", ignore=shutil.ignore_patterns("__pycache__"))
    write_test_repository(ctx / "models")
    return ctx


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    build_seconds: float
    base_seconds: float
    size_bytes: int
    real_models: bool
    inspect: dict[str, Any]


@functools.cache
def built_image() -> BuiltImage:
    """Build IMAGE from the repository's Dockerfile once per test session."""
    base_seconds = ensure_standin_base()
    context = build_context()
    started = time.monotonic()
    podman(
        "build",
        "--isolation=chroot",
        "--network=host",
        "--format=docker",  # keeps HEALTHCHECK (the OCI format has no field for it)
        "--build-arg",
        f"BASE_IMAGE={STANDIN_BASE}",
        "--build-arg",
        "VERSION=0.1.0",
        "--build-arg",
        "REVISION=test",
        "-t",
        IMAGE,
        "-f",
        str(REPO_ROOT / "Dockerfile"),
        str(context),
        timeout=900,
    )
    build_seconds = time.monotonic() - started
    inspect = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    return BuiltImage(
        tag=IMAGE,
        build_seconds=build_seconds,
        base_seconds=base_seconds,
        size_bytes=int(inspect["Size"]),
        real_models=context == REPO_ROOT,
        inspect=inspect,
    )


class Container:
    """`podman run -d --network=host` of an image with CATDOG_PORT set to a free port."""

    def __init__(self, image: str, *run_args: str, env: dict[str, str] | None = None) -> None:
        self.image = image
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # gRPC on a free port too: with host networking the image's default 8001 could be taken.
        self.env = {"CATDOG_PORT": str(self.port), "CATDOG_GRPC_PORT": str(free_port()), **(env or {})}
        self.run_args = list(run_args)
        self.name = f"catdog-test-{self.port}"
        self.client = httpx.Client(base_url=self.base_url, timeout=30.0)
        self.started_at = 0.0

    def start(self, *, timeout: float = 120.0) -> float:
        """Run and wait until /readyz answers 200; returns seconds from `podman run` to ready."""
        env_args = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        self.started_at = time.monotonic()
        podman("run", "-d", "--name", self.name, "--network=host", *env_args, *self.run_args, self.image)
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if not state.get("Running"):
                raise RuntimeError(f"container exited ({state.get('ExitCode')}):\n{self.logs()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return time.monotonic() - self.started_at
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"/readyz not ready within {timeout}s:\n{self.logs()}")

    def inspect(self) -> dict[str, Any]:
        return dict(json.loads(podman("container", "inspect", self.name).stdout)[0])

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def process_uids(self) -> tuple[int, ...]:
        """Real, effective, saved and filesystem UID of the container's main process, as the host sees it."""
        pid = int(self.inspect()["State"]["Pid"])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return tuple(int(v) for v in line.split()[1:])
        raise AssertionError(f"no Uid line for pid {pid}")

    def stop(self) -> None:
        self.client.close()
        podman("rm", "-f", "-t", "10", self.name, check=False, timeout=60)

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
