"""Every PromQL query of the chart's ScaledObject against a real Prometheus scraping a real catdog.

The `prometheus` binary scrapes the service with the labels a ServiceMonitor gives its targets (namespace, service,
pod), the chart is rendered with every Prometheus signal on, and each trigger's query runs exactly as KEDA would send
it. Traffic overloads a deliberately small admission limit, so the refusal rate and the queue wait have something to
show: each query must find the series it names (not just its `or vector(0)` fallback) and read a positive value
while the load lasted. The Prometheus wrapper and its readiness and scrape waits are the dashboard test's.
"""

from __future__ import annotations

import concurrent.futures
import io
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import require_tool
from tests.deploy.helm_support import FULLNAME, NAMESPACE, one, render
from tests.deploy.test_dashboard import Prometheus
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.slow

FALLBACK = " or vector(0)"
SCRAPE_CONFIG = """\
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: catdog
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
        labels:
          namespace: {namespace}
          service: {service}
          pod: {service}-7d9f8-abcde
"""


def scaled_object_queries() -> dict[str, str]:
    """Trigger name -> query, from the chart with every Prometheus signal on and the default selector."""
    values = {"autoscaling": {"keda": {"enabled": True, "signals": {"queueWait": {"enabled": True}}}}}
    spec = one(render(values), "ScaledObject")["spec"]
    return {t["name"]: t["metadata"]["query"] for t in spec["triggers"] if t["type"] == "prometheus"}


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), colour).save(buf, format="PNG")
    return buf.getvalue()


def overload(base_url: str, seconds: float, clients: int = 12) -> dict[int, int]:
    """`clients` threads posting predictions back to back: more than the admission limit lets in."""
    images = [_png((230, 20, 20)), _png((20, 20, 230)), _png((20, 230, 20))]
    deadline = time.monotonic() + seconds

    def client(index: int) -> dict[int, int]:
        counts: dict[int, int] = {}
        with httpx.Client(base_url=base_url, timeout=30.0) as http:
            i = index
            while time.monotonic() < deadline:
                model = "pretrained" if i % 2 else "scratch"
                response = http.post(f"/predict/{model}", files={"file": ("x.png", images[i % len(images)])})
                counts[response.status_code] = counts.get(response.status_code, 0) + 1
                i += 1
        return counts

    total: dict[int, int] = {}
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for counts in pool.map(client, range(clients)):
            for status, n in counts.items():
                total[status] = total.get(status, 0) + n
    return total


@pytest.fixture(scope="module")
def loaded_prometheus(tiny_repository: Path) -> Iterator[tuple[Prometheus, float]]:
    """Prometheus after ~14 s of overload; also the time at which the load ended."""
    require_tool("prometheus")
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        # The split pipeline with batching, where the queue wait is measured (the chart's 2-CPU pods run it).
        "CATDOG_PIPELINE": "split",
        "CATDOG_BATCH_MAX_SIZE": "4",
        "CATDOG_BATCH_MAX_WAIT_MS": "5",
        "CATDOG_ADMISSION_MIN_LIMIT": "2",
        "CATDOG_ADMISSION_MAX_LIMIT": "2",
    }
    with ServiceProcess(env) as svc:
        prom = Prometheus(f"127.0.0.1:{svc.port}")
        config = SCRAPE_CONFIG.format(target=f"127.0.0.1:{svc.port}", namespace=NAMESPACE, service=FULLNAME)
        (prom.dir / "prometheus.yml").write_text(config)
        prom.start()
        try:
            prom.wait_for_scrapes(1)
            counts = overload(svc.base_url, 14.0)
            ended = time.time()
            print(f"\ntraffic by status: {counts}")
            assert counts.get(200, 0) > 10, counts
            assert counts.get(503, 0) > 5, f"no refusals, nothing for the refusal trigger to see: {counts}"
            prom.wait_for_scrapes(2)
            yield prom, ended
        finally:
            prom.stop()


def _values(prom: Prometheus, expr: str, at: float) -> list[float]:
    response = prom.client.get("/api/v1/query", params={"query": expr, "time": f"{at:.3f}"})
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return [float(sample["value"][1]) for sample in body["data"]["result"]]


def test_the_chart_sends_the_queries_this_test_runs() -> None:
    queries = scaled_object_queries()
    assert set(queries) == {"in-flight", "refusals", "queue-wait-p95"}
    for name, query in queries.items():
        assert query.endswith(FALLBACK), name
        assert f'namespace="{NAMESPACE}",service="{FULLNAME}"' in query, name


@pytest.mark.parametrize("name", ["in-flight", "refusals", "queue-wait-p95"])
def test_each_query_returns_one_positive_number_under_load(
    loaded_prometheus: tuple[Prometheus, float], name: str
) -> None:
    """As KEDA reads it: one sample, finite, and above zero at the end of the load (the rate windows cover it); the
    in-flight gauge is read at its peak during the load (a subquery over the query itself)."""
    prom, ended = loaded_prometheus
    query = scaled_object_queries()[name]
    inner = query.removesuffix(FALLBACK)
    # The series exist: without the fallback the query still answers.
    raw = _values(prom, inner, ended)
    assert len(raw) == 1 and math.isfinite(raw[0]), f"{name}: {inner} -> {raw}"
    expr = f"max_over_time(({query})[14s:1s])" if name == "in-flight" else query
    [value] = _values(prom, expr, ended)
    print(f"\n{name}: {value:.4f}")
    assert value > 0, f"{name} read {value} under overload: {expr}"
    if name in ("in-flight", "refusals"):
        assert value <= 1.5, f"{name} is a fraction, read {value}"


def test_queries_read_zero_not_nothing_when_no_catdog_is_scraped(loaded_prometheus: tuple[Prometheus, float]) -> None:
    """At zero pods there are no series: each query must still answer 0, so KEDA sees an inactive trigger."""
    prom, ended = loaded_prometheus
    for name, query in scaled_object_queries().items():
        absent = query.replace(f'namespace="{NAMESPACE}"', 'namespace="elsewhere"')
        assert _values(prom, absent, ended) == [0.0], name
