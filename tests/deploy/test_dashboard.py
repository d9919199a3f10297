"""The Grafana dashboard against real Prometheus: every PromQL expression in it must return data.

The real `prometheus` binary runs with the compose stack's own prometheus.yml (only the scrape target is
substituted) against the real service; traffic (good predictions, bad uploads, unknown models) goes in, and
then each panel query and template-variable query runs over Prometheus' HTTP API. A dashboard that queries a
metric name the service does not export fails here.
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from loadtest.ports import free_port
from tests.conftest import require_tool
from tests.support.server import REPO_ROOT, ServiceProcess

pytestmark = pytest.mark.slow

COMPOSE = REPO_ROOT / "deploy" / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "catdog.json"
PROMETHEUS_YML = COMPOSE / "prometheus" / "prometheus.yml"
ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"

# What Grafana would put in place of its built-in variables for a 30-minute view.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "30m",
}
ALLOWED_EXTRA_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title + refId, expr) for every target in the dashboard."""
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variable_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """Template variables of type query: label_values(<selector>, <label>) -> (name, selector, label)."""
    out = []
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        out.append((var["name"], query))
    return out


def substitute(expr: str, board: dict[str, Any]) -> str:
    """Grafana's interpolation with every template variable at "All" (its allValue) and fixed built-ins."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            expr = expr.replace(f"${{{var['name']}}}", var["allValue"]).replace(f"${var['name']}", var["allValue"])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def contract_metrics() -> set[str]:
    """Metric names of the contract table in docs/architecture.md plus the instrumentator/process ones."""
    names = set(re.findall(r"^\| `(catdog_[a-z_]+)`", ARCHITECTURE.read_text(), flags=re.MULTILINE))
    assert len(names) >= 10, "the metrics table in docs/architecture.md was not found"
    return names | ALLOWED_EXTRA_METRICS


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (identifiers directly followed by a selector) or in a
    variable's `label_values(metric..., label)`."""
    found = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr)) - PROMQL_KEYWORDS
    found |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", expr))
    return {
        re.sub(r"_(bucket|sum|count)$", "", name) if name.startswith("catdog_") or "duration" in name else name
        for name in found
    }


# --- static checks -----------------------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    names = {var["name"] for var in board["templating"]["list"]}
    assert {"datasource", "model", "instance"} <= names
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    titles = " | ".join(panel["title"].lower() for panel in panels(board))
    for needed in (
        "request rate",
        "error",
        "end to end",
        "preprocess",
        "queue",
        "inference",
        "batch size",
        "in-flight",
        "rejections",
        "predictions by label",
        "confidence",
        "cpu",
        "memory",
        "model info",
    ):
        assert needed in titles, f"no panel about {needed}"


def test_dashboard_queries_only_contract_metrics() -> None:
    allowed = contract_metrics()
    board = dashboard()
    used: set[str] = set()
    for title, expr in [*panel_queries(board), *variable_queries(board)]:
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert names <= allowed, f"{title}: {sorted(names - allowed)} not in docs/architecture.md"
        used |= names
    # Every stage of the data flow is on the dashboard.
    for name in (
        "catdog_request_duration_seconds",
        "catdog_preprocess_duration_seconds",
        "catdog_queue_wait_seconds",
        "catdog_inference_duration_seconds",
        "catdog_batch_size",
        "catdog_predictions_total",
        "catdog_prediction_confidence",
        "catdog_requests_in_flight",
        "catdog_rejected_requests_total",
        "catdog_model_info",
        "http_requests_total",
        "http_request_duration_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in used, f"{name} is not on the dashboard"


def test_provisioned_datasource_matches_the_dashboard() -> None:
    import yaml

    provisioning = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus"
    default = next(v for v in dashboard()["templating"]["list"] if v["name"] == "datasource")
    assert default["query"] == "prometheus"
    assert default["current"]["value"] == source["uid"]


# --- against real Prometheus --------------------------------------------------------------------------------


class Prometheus:
    """The Debian `prometheus` binary with the compose prometheus.yml, the target pointed at `target`."""

    def __init__(self, target: str, flags: tuple[str, ...] = ()) -> None:
        self.flags = flags  # e.g. --enable-feature=exemplar-storage (tests/service/test_exemplars.py)
        self.dir = Path(tempfile.mkdtemp(prefix="catdog-prometheus-"))
        config = PROMETHEUS_YML.read_text()
        assert '"api:8000"' in config, "the compose prometheus.yml no longer scrapes api:8000"
        (self.dir / "prometheus.yml").write_text(config.replace('"api:8000"', f'"{target}"'))
        self.port = free_port()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30.0)
        self.log = (self.dir / "prometheus.log").open("wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        self.proc = subprocess.Popen(
            [
                require_tool("prometheus"),
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                *self.flags,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.output())

    def output(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        result = body["data"]["result"]
        return list(result) if isinstance(result, list) else [{"value": result}]

    def series(self, match: str) -> list[dict[str, str]]:
        body = self.client.get("/api/v1/series", params={"match[]": match}).json()
        assert body["status"] == "success", body
        return list(body["data"])

    def wait_for_scrapes(self, count: int, timeout: float = 60.0) -> None:
        """Until the target has been scraped `count` more times from now."""
        first = self._scrape_count()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._scrape_count() >= first + count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"no {count} scrapes in {timeout}s:\n{self.output()[-3000:]}")

    def _scrape_count(self) -> int:
        result = self.query('count_over_time(up{job="catdog"}[1h])')
        return int(float(result[0]["value"][1])) if result else 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.client.close()
        self.log.close()


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def send_traffic(svc: ServiceProcess, photos: dict[str, Path], seconds: float) -> dict[str, int]:
    """Predictions on both models (real photos and plain colours, so every label shows up), some in one
    request together, plus failures: undecodable and empty uploads, an unknown model, a missing field."""
    client = svc.client
    counts: dict[str, int] = {}
    real = [photos[name].read_bytes() for name in sorted(photos)[:6]]
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        calls = [
            client.post("/predict/pretrained", files={"file": ("red.png", _png((230, 20, 20)))}),
            client.post("/predict/pretrained", files={"file": ("blue.png", _png((20, 20, 230)))}),
            client.post("/predict/pretrained", files={"file": ("green.png", _png((20, 230, 20)))}),
            client.post("/predict/scratch", files={"file": ("photo.webp", real[i % len(real)])}),
            client.post(
                "/predict/scratch",
                files=[("file", ("a.png", _png((200, 10, 10)))), ("file", ("b.png", _png((10, 10, 200))))],
            ),
            client.post("/predict/pretrained", files={"file": ("junk.png", b"this is not an image")}),
            client.post("/predict/pretrained", files={"file": ("empty.png", b"")}),
            client.post("/predict/nope", files={"file": ("red.png", _png((230, 20, 20)))}),
            client.post("/predict/pretrained", data={"other": "x"}),
            client.get("/v1/models"),
        ]
        for response in calls:
            key = str(response.status_code)
            counts[key] = counts.get(key, 0) + 1
        time.sleep(0.2)
    return counts


@pytest.fixture(scope="module")
def prometheus_with_traffic(tiny_repository: Path, photos: dict[str, Path]) -> Iterator[Prometheus]:
    require_tool("prometheus")
    with ServiceProcess(
        {"CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_BATCH_MAX_SIZE": "4", "CATDOG_BATCH_MAX_WAIT_MS": "2"}
    ) as svc:
        prom = Prometheus(f"127.0.0.1:{svc.port}").start()
        try:
            prom.wait_for_scrapes(1)
            # Traffic across at least two scrapes (5 s apart), so every counter and histogram has a rate.
            counts = send_traffic(svc, {p.name: p for p in (REPO_ROOT / "data/images").glob("*.webp")}, 12.0)
            print(f"\ntraffic by status: {counts}")
            assert counts.get("200", 0) > 10
            assert sum(v for k, v in counts.items() if k.startswith("4")) > 10
            prom.wait_for_scrapes(2)
            yield prom
        finally:
            prom.stop()


def test_every_dashboard_query_returns_data(prometheus_with_traffic: Prometheus) -> None:
    prom = prometheus_with_traffic
    board = dashboard()
    queries = panel_queries(board)
    assert len(queries) >= 30
    empty, nan_only = [], []
    for title, expr in queries:
        result = prom.query(substitute(expr, board))
        if not result:
            empty.append(f"{title}: {expr}")
            continue
        values = [float(sample["value"][1]) for sample in result]
        if not any(math.isfinite(v) for v in values):
            nan_only.append(f"{title}: {expr} -> {values}")
    assert not empty, "queries with no data:\n" + "\n".join(empty)
    assert not nan_only, "queries with only NaN/Inf:\n" + "\n".join(nan_only)
    print(f"\n{len(queries)} dashboard queries all returned data")


def test_template_variables_have_values(prometheus_with_traffic: Prometheus) -> None:
    prom = prometheus_with_traffic
    board = dashboard()
    for name, query in variable_queries(board):
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"{name}: unsupported variable query {query}"
        selector, label = substitute(match.group(1), board), match.group(2)
        values = {series[label] for series in prom.series(selector) if label in series}
        assert values, f"variable {name}: no values for {query}"
        if name == "model":
            assert values == {"pretrained", "scratch"}


def test_drift_and_rejection_panels_see_what_was_sent(prometheus_with_traffic: Prometheus) -> None:
    """Not just non-empty: the label mix and the rejection reasons are the ones the traffic produced."""
    prom = prometheus_with_traffic
    labels = {(s["metric"]["model"], s["metric"]["label"]) for s in prom.query("catdog_predictions_total")}
    assert {("pretrained", "cat"), ("pretrained", "dog"), ("pretrained", "other")} <= labels, labels
    reasons = {s["metric"]["reason"] for s in prom.query("catdog_rejected_requests_total")}
    documented = set(re.findall(r"`([a-z_]+)`", ARCHITECTURE.read_text().split("`reason` values")[1].split("\n\n")[0]))
    assert "empty" in reasons, reasons
    assert reasons <= documented, f"undocumented reasons: {reasons - documented}"
