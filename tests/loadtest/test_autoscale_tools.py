"""The autoscale and cold-start tools against a real catdog (tiny models): one rate step of the sweep with its
per-second readings scraped from the real /metrics, and one cold-start run. Figures are not asserted (benchmarks
measure), only that each reading exists and is consistent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from loadtest.autoscale import capacity, cold_start
from loadtest.bench import make_images, requests_for, server
from loadtest.ports import free_port

CPU = str(min(os.sched_getaffinity(0)))


def test_one_rate_step_reads_every_signal_from_the_real_metrics(tiny_repository: Path, tmp_path: Path) -> None:
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_GRPC_PORT": str(free_port()),
        "CATDOG_PIPELINE": "split",
        "CATDOG_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    images = make_images(tmp_path / "images")["small"]
    with server(cmd, env, CPU) as (url, proc, _):
        row = capacity.measure_rate(url, proc.pid, requests_for(url, "/predict/pretrained", images), 4.0, 6.0)
    assert row.rate == 4.0
    assert row.answered_rps > 0 and row.latencies_ms == sorted(row.latencies_ms)
    assert set(row.samples) == set(capacity.SIGNALS)
    for signal, values in row.samples.items():
        assert values, signal
        assert all(v >= 0 for v in values), signal
    assert 0 <= row.refusal_fraction <= 1
    assert all(0 <= v <= 1.05 for v in row.samples["in_flight"])
    assert max(row.samples["cpu"]) > 0
    again = capacity.Row.from_json(row.to_json())
    assert again == row


def test_a_cold_start_run_times_ready_and_the_first_answer(tiny_repository: Path) -> None:
    result = cold_start.measure(1, CPU, tiny_repository)
    [run] = result["runs"]
    assert run["ready_s"] > 0 and run["cpu_s_to_ready"] > 0
    assert run["first_answer_ms"] > 0 and run["warm_median_ms"] > 0
    assert run["start_to_first_answer_s"] >= run["ready_s"]
    assert result["median"] == run
