"""Triton's perf_analyzer as scripts/install-perf-analyzer.sh leaves it, and its input-data file for an image."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtest.triton_perf import input_data, perf_analyzer_home

INSTALL = "scripts/install-perf-analyzer.sh"


def require_perf_analyzer() -> Path:
    """The wrapper that runs perf_analyzer on Debian 13's glibc; skips outside CI when missing, fails in CI (where
    scripts/install-system-deps.sh runs the install script)."""
    wrapper = perf_analyzer_home() / "perf_analyzer"  # where scripts/install-perf-analyzer.sh puts it
    if wrapper.is_file() and os.access(wrapper, os.X_OK):
        return wrapper
    if os.environ.get("CI"):
        pytest.fail(f"perf_analyzer is required in CI and missing at {wrapper} (run {INSTALL})")
    pytest.skip(f"perf_analyzer not installed at {wrapper} (run {INSTALL})")


def image_input_data(path: Path, image: bytes) -> Path:
    """The input file with one image, shape [1] (the batch dimension comes from -b)."""
    return input_data(path, image, [1])


@dataclass
class Measurement:
    """One concurrency level of a run: the client's side and the server-side statistics it read (deltas)."""

    concurrency: int
    client_requests: int
    throughput: float
    server_inferences: int
    server_executions: int
    server_requests: int
    csv: dict[str, str]


def run(wrapper: Path, args: list[str], csv_path: Path, *, timeout: float = 240) -> tuple[str, list[Measurement]]:
    """Run perf_analyzer with `args` and `-f csv_path`; its stdout and the measurements it reported."""
    done = subprocess.run(
        [str(wrapper), *args, "-f", str(csv_path)], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"perf_analyzer failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr}"
    return done.stdout, parse(done.stdout, csv_path.read_text())


def parse(stdout: str, csv_text: str) -> list[Measurement]:
    """The figures of each `Request concurrency: N` block of stdout, with its row of the CSV."""
    header, *rows = [line.split(",") for line in csv_text.strip().splitlines()]
    by_concurrency = {int(row[0]): dict(zip(header, row, strict=True)) for row in rows}
    out = []
    for block in stdout.split("Request concurrency: ")[1:]:
        concurrency = int(block.split("\n", 1)[0])
        client, _, server = block.partition("  Server:")

        def field(text: str, name: str) -> str:
            line = next(line for line in text.splitlines() if line.strip().startswith(name + ":"))
            return line.split(":", 1)[1].split()[0]

        out.append(
            Measurement(
                concurrency,
                int(field(client, "Request count")),
                float(field(client, "Throughput")),
                int(field(server, "Inference count")),
                int(field(server, "Execution count")),
                int(field(server, "Successful request count")),
                by_concurrency[concurrency],
            )
        )
    return out
