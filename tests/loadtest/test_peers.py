"""The peers benchmark's parts that need no peer venv (CI runs these; the full run is `make bench-peers`):
options, the server list, the request encodings against a real HTTP server, the answer check, the report,
the data-plane requirements read from the code, process-tree shutdown, and one real catdog measurement."""

from __future__ import annotations

import base64
import email.parser
import io
import json
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from loadtest.peers import procs, report, venvs
from loadtest.peers.cli import card_distance, failures, launch, measure, parse_args
from loadtest.peers.protocol import ANSWER_TOLERANCE, ENCODINGS, answer_difference, exchange
from loadtest.peers.registry import CATDOG, PEERS, Contender, contenders
from loadtest.peers.servers.common import LIMITS, Classifier, card_tensor
from service.dataplane.card import ModelCard
from service.dataplane.cpu import this_cpu
from service.settings import Settings

LABELS = ["cat", "dog", "other"]


# --- options -------------------------------------------------------------------------------------------------


def test_defaults_measure_every_peer_both_sizes_with_and_without_batching() -> None:
    args = parse_args([])
    assert args.peers == list(PEERS)
    assert args.sizes == ["small", "large"]
    assert args.batching == ["off", "on"]
    assert (args.concurrency, args.repeat, args.server_cpus, args.client_cpus) == (8, 3, "1", "0")
    assert args.precision == "auto"


def test_smoke_is_one_peer_one_size_one_short_round() -> None:
    args = parse_args(["--smoke"])
    assert args.peers == ["litserve"]
    assert (args.sizes, args.repeat, args.batching) == (["small"], 1, ["off"])
    assert args.seconds <= 5
    assert parse_args(["--smoke", "--peers", "kserve"]).peers == ["kserve"]


def test_lists_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--peers", "kserve,rayserve", "--sizes", "large"]).peers == ["kserve", "rayserve"]
    for bad in (["--peers", "kserve,torchserve"], ["--sizes", "huge"], ["--batching", "maybe"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    assert "torchserve" in capsys.readouterr().err


def test_catdog_runs_first_and_batching_only_where_a_server_has_its_own() -> None:
    chosen = contenders(["kserve", "litserve", CATDOG], ["off", "on"])
    assert [c.key for c in chosen] == ["catdog", "catdog+batch", "kserve", "litserve", "litserve+batch"]
    assert [c.key for c in contenders(["pytriton"], ["on"])] == ["catdog+batch", "pytriton+batch"]


def test_peer_servers_use_catdogs_own_default_image_limits() -> None:
    settings = Settings()
    assert LIMITS.max_bytes == settings.max_upload_bytes
    assert LIMITS.max_pixels == settings.max_image_pixels


# --- encodings against a real HTTP server --------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str], bytes]] = []  # noqa: RUF012 (one test server per module)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.seen.append((self.path, dict(self.headers.items()), body))
        answer = json.dumps({"probabilities": dict(zip(LABELS, [0.7, 0.2, 0.1], strict=True))}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _jpeg_from(encoding: str, headers: dict[str, str], body: bytes) -> bytes:
    """Recover the image the way each framework reads its request."""
    if encoding == "multipart":
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
        )
        (part,) = message.get_payload()
        assert part.get_param("name", header="content-disposition") == "file"
        return bytes(part.get_payload(decode=True))
    if encoding == "raw":
        return body
    if encoding == "oip-binary":
        size = int(headers["Inference-Header-Content-Length"])
        header = json.loads(body[:size])
        assert header["outputs"][0]["parameters"] == {"binary_data": False}
        (length,) = struct.unpack("<I", body[size : size + 4])
        assert header["inputs"][0]["parameters"]["binary_data_size"] == length + 4 == len(body) - size
        return body[size + 4 :]
    tensor = json.loads(body)["inputs"][0]
    assert (tensor["datatype"], tensor["shape"]) == ("BYTES", [1])
    if encoding == "oip-json-base64-mlserver":
        assert tensor["parameters"] == {"content_type": "base64"}
    return base64.b64decode(tensor["data"][0])


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_each_encoding_carries_the_exact_jpeg(recorder: str, encoding: str) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\r\n--\x00\xff\xd9"
    request = ENCODINGS[encoding].build(recorder, "/v2/models/pretrained/infer", jpeg, "cat.jpg", False)
    status, body = exchange(recorder, request)
    assert status == 200
    if "oip" not in encoding:  # the others answer as catdog does (the recorder does too)
        assert ENCODINGS[encoding].parse(body, LABELS) == [0.7, 0.2, 0.1]
    path, headers, sent = _Recorder.seen[-1]
    assert path == "/v2/models/pretrained/infer"
    assert _jpeg_from(encoding, headers, sent) == jpeg


def test_triton_batched_requests_carry_a_batch_dimension(recorder: str) -> None:
    for batched, shape in ((False, [1]), (True, [1, 1])):
        request = ENCODINGS["oip-binary"].build(recorder, "/x", b"\xff\xd8\xff", "a.jpg", batched)
        body = request.split(b"\r\n\r\n", 1)[1]
        head = json.loads(body[: body.index(b"}]}") + 3])
        assert head["inputs"][0]["shape"] == shape


def test_oip_answers_are_read_from_the_first_output_and_sized_by_the_labels() -> None:
    body = json.dumps({"outputs": [{"name": "probabilities", "data": [0.5, 0.25, 0.25]}]}).encode()
    assert ENCODINGS["oip-json-base64"].parse(body, LABELS) == [0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match="expected 3"):
        ENCODINGS["oip-binary"].parse(json.dumps({"outputs": [{"data": [1.0]}]}).encode(), LABELS)


def test_answer_check() -> None:
    assert answer_difference([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]) == 0.0
    assert answer_difference([0.5, 0.30005, 0.2], [0.5, 0.3, 0.2]) <= ANSWER_TOLERANCE
    assert answer_difference([0.5, 0.301, 0.2], [0.5, 0.3, 0.2]) > ANSWER_TOLERANCE
    assert answer_difference([0.5, 0.5], [0.5, 0.3, 0.2]) == float("inf")


# --- report --------------------------------------------------------------------------------------------------


def _cell(rps: float, p50: float, errors: int = 0) -> dict[str, Any]:
    summary = {"rps": rps, "p50_ms": p50, "p99_ms": p50 * 1.5, "errors": errors}
    saturated = {**summary, "server_cpu_ms_per_request": round(1000 / rps, 2)}
    return {"saturated": saturated, "single": summary, "half": {**summary, "p99_ms": p50 * 2}}


def _entry(peer: str, title: str, batched: bool, runs: list[dict[str, Any]], error: str | None = None) -> Any:
    return {
        "peer": peer,
        "title": title,
        "dist": peer,
        "batched": batched,
        "batching": "dynamic batcher" if batched else "off",
        "encoding": "multipart",
        "versions": {peer: "1.0", "onnxruntime": "1.32.0"},
        "error": error,
        "runs": runs,
    }


def _run(rps: float, p50: float, diff: float = 0.0, errors: int = 0) -> dict[str, Any]:
    return {
        "cold_start_s": 1.5,
        "answers": {"cat-cat-small.jpg": {"max_diff": diff}},
        "sizes": {"small": _cell(rps, p50, errors)},
        "memory": {"rss_mb": 200.0, "processes": 1},
        "leftover": [],
    }


@pytest.fixture
def results() -> dict[str, Any]:
    settings = {"sizes": ["small"], "server_cpus": "1", "client_cpus": "0", "seconds": 10.0, "repeat": 2}
    settings |= {"concurrency": 8, "batch_size": 8, "batch_wait_ms": 2.0, "model": "pretrained"}
    contenders = {
        "catdog": _entry(CATDOG, "catdog", False, [_run(40.0, 25.0), _run(44.0, 24.0)]),
        "pytriton+batch": _entry("pytriton", "Triton", True, [_run(50.0, 30.0, diff=2e-7, errors=1), _run(45, 20)]),
        "bentoml": _entry("bentoml", "BentoML", False, [], error="install failed: no matching distribution"),
    }
    out = {"machine": "2 x test CPU", "settings": settings, "limit": {"small": [60.0, 62.5]}, "contenders": contenders}
    for entry in contenders.values():
        entry["summary"] = report.summarise(entry, ["small"])
    return out


def test_summary_takes_the_best_round_and_sums_errors(results: dict[str, Any]) -> None:
    triton = results["contenders"]["pytriton+batch"]["summary"]
    assert triton["small"]["rps"] == 50.0
    assert triton["small"]["rps_runs"] == [50.0, 45]
    assert triton["small"]["single_p50_ms"] == 20
    assert triton["errors"] == 3  # one in each of saturated, single and half of the first round
    assert triton["answer_max_diff"] == 2e-7


def test_markdown_lists_every_server_including_the_failed_one(results: dict[str, Any]) -> None:
    table = report.markdown(results)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| server | batching | img/s small |")
    assert rows[2].startswith("| catdog in-process limit | — | 62.5 |")
    catdog = next(r for r in rows if r.startswith("| **catdog** "))
    assert "| 44.0 |" in catdog
    assert "| 24.0 / 36.0 |" in catdog
    assert "200 (1)" in catdog
    failed = next(r for r in rows if r.startswith("| BentoML "))
    assert "**not measured**: install failed: no matching distribution" in failed
    triton = next(r for r in rows if r.startswith("| Triton "))
    assert "| dynamic batcher |" in triton
    assert "over tolerance" not in table
    assert "catdog 44.0 img/s (catdog) / best peer 50.0 img/s (Triton + batching) = **0.88x**" in table
    # Server CPU per image, least of the rounds: catdog 1000/44, Triton 1000/50.
    assert "| 22.73 |" in catdog
    assert "catdog 22.73 ms (catdog) against the leanest peer's 20.00 ms (Triton + batching): **0.88x**" in table


def test_wrong_answers_and_surviving_processes_fail_the_run(results: dict[str, Any]) -> None:
    assert failures(results) == []
    triton = results["contenders"]["pytriton+batch"]
    triton["runs"][1]["answers"]["cat-cat-small.jpg"]["max_diff"] = 0.01
    triton["runs"][1]["leftover"] = [4242]
    triton["runs"][0]["unpinned"] = {"4243": [0, 1]}
    triton["summary"] = report.summarise(triton, ["small"])
    problems = failures(results)
    assert len(problems) == 3
    assert "differ from catdog's by 1.00e-02" in problems[0]
    assert "[4242]" in problems[1]
    assert "4243" in problems[2]
    table = report.markdown(results)
    assert "over tolerance" in table
    assert "1 processes survived shutdown; 1 processes not pinned" in table


# --- what the peer venvs get ---------------------------------------------------------------------------------


def test_peer_servers_import_only_the_protocol_free_data_plane() -> None:
    modules = venvs.imported_modules(venvs.SERVER_COMMON)
    assert {"numpy", "PIL", "onnxruntime", "pydantic"} <= modules
    assert not modules & {"fastapi", "starlette", "uvicorn", "structlog", "prometheus_client", "grpc"}
    requirements = venvs.dataplane_requirements()
    assert any(r.startswith("pillow") for r in requirements)
    assert all(not r.startswith("fastapi") for r in requirements)


def test_a_new_imaging_library_reaches_the_peer_venvs_with_its_pyproject_bounds(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("")
    (tmp_path / "service" / "imaging.py").write_text("import simplejpeg\nfrom PIL import Image\nimport json\n")
    (tmp_path / "service" / "entry.py").write_text("from service.imaging import decode\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["simplejpeg>=1.7", "Pillow>=10.4", "fastapi>=0.115"]\n'
    )
    assert venvs.imported_modules("service.entry", tmp_path) == {"simplejpeg", "PIL"}
    assert venvs.dataplane_requirements(tmp_path / "pyproject.toml", "service.entry") == [
        "Pillow>=10.4",
        "simplejpeg>=1.7",
    ]


def test_libpython_folder_comes_from_the_venvs_base_interpreter(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /opt/python/3.11.7/bin\ninclude-system-site-packages = false\n")
    assert venvs.base_lib_dir(tmp_path) == Path("/opt/python/3.11.7/lib")


# --- processes -----------------------------------------------------------------------------------------------

_TREE = """
import os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(60)"])  # leaves the session
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
subprocess.Popen([sys.executable, "-c", deaf])  # ignores SIGTERM
print("started", flush=True)
time.sleep(60)
"""


def test_stop_ends_the_whole_tree_even_escaped_and_stubborn_processes(tmp_path: Path) -> None:
    log = tmp_path / "tree.log"
    cpu = str(min(os.sched_getaffinity(0)))
    # A marker of its own: another run of this test on the machine (another checkout, or one that failed in the
    # last minute and left its sleepers) must not count as this tree.
    marker = f"test-marker-{uuid.uuid4().hex}"
    proc = procs.start([sys.executable, "-c", _TREE], cpu, dict(os.environ), tmp_path, log, marker)
    deadline = time.monotonic() + 20
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    found = procs.tree(proc.pid, marker)
    assert len(found) == 4
    assert all(os.sched_getaffinity(pid) == {int(cpu)} for pid in found)
    assert procs.tree_memory_mb(proc.pid, marker)["processes"] == 4
    assert procs.tree_cpu_s(proc.pid, marker) > 0  # four interpreters started: each used some CPU
    assert procs.unpinned(proc.pid, marker, {int(cpu)}) == {}
    assert set(procs.unpinned(proc.pid, marker, {int(cpu) + 1})) == set(found)
    assert procs.stop(proc, marker, grace_s=1.0) == []
    assert procs.tree(proc.pid, marker) == []


# --- one real measurement: catdog itself, through the same code the peers go through -------------------------


@pytest.mark.slow
def test_catdog_is_measured_checked_and_ended(tmp_path: Path) -> None:
    from loadtest.bench import make_images

    cpu = str(min(os.sched_getaffinity(0)))
    args = parse_args(["--peers", CATDOG, "--sizes", "small", "--seconds", "0.5", "--server-cpus", cpu])
    images = {"small": make_images(tmp_path / "images")["small"]}
    reference: dict[str, list[float]] = {}
    run = measure(Contender(PEERS[CATDOG], False), args, images, LABELS, reference, tmp_path / "catdog.log")
    assert set(reference) == {"cat-cat-small.jpg", "dog-dog-small.jpg"}
    assert all(abs(sum(p) - 1) < 1e-3 for p in reference.values())
    assert all(a["max_diff"] == 0.0 for a in run["answers"].values())
    small = run["sizes"]["small"]
    assert small["saturated"]["requests"] > 0
    assert small["saturated"]["errors"] == small["single"]["errors"] == small["half"]["errors"] == 0
    assert run["memory"]["rss_mb"] > 50
    assert small["saturated"]["server_cpu_ms_per_request"] > 0  # the tree's CPU time around the saturation run
    assert run["leftover"] == []
    assert "cold_start_s" in run


# --- the card work: each peer as users set it up -------------------------------------------------------------


def test_both_works_run_by_default_and_either_can_be_chosen() -> None:
    assert parse_args([]).work == ["same", "card"]
    assert parse_args(["--work", "card"]).work == ["card"]
    with pytest.raises(SystemExit):
        parse_args(["--work", "fast"])


def test_the_card_work_starts_catdog_as_shipped_and_peers_on_the_fp32_file(tmp_path: Path) -> None:
    args = parse_args(["--precision", "int8"])
    for work, catdog_precision, peer_precision in (("same", "int8", "int8"), ("card", None, "fp32")):
        scratch = tmp_path / work
        scratch.mkdir()
        _, env = launch(Contender(PEERS[CATDOG], False), args, 8000, scratch, work)
        assert env.get("CATDOG_PRECISION") == catdog_precision  # card: unset, the card's default precision
        assert (scratch / "models" / "pretrained" / "model.json").is_file()
        command, _ = launch(Contender(PEERS["litserve"], False), args, 8001, scratch, work)
        assert command[command.index("--precision") + 1] == peer_precision
        assert command[command.index("--work-per-image") + 1] == work


def test_card_classifier_serves_the_fp32_file_with_pillow_preprocessing() -> None:
    models = Path(__file__).resolve().parents[2] / "models"
    card = ModelCard.load(models / "pretrained" / "model.json")
    same = Classifier(models, "pretrained", "auto", "same")
    users = Classifier(models, "pretrained", "auto", "card")
    assert users.onnx_file == card.onnx.file
    assert same.onnx_file == card.resolve("auto", int8_native=this_cpu().native).file
    cat = (Path(__file__).resolve().parents[2] / "loadtest" / "images" / "cat-cat-1024x768.jpg").read_bytes()
    ours, theirs = same.predict([cat])[0], users.predict([cat])[0]
    assert abs(float(theirs.sum()) - 1) < 1e-4
    assert users.labels[int(theirs.argmax())] == same.labels[int(ours.argmax())] == "cat"
    assert float(np.abs(ours - theirs).max()) < 0.05  # other preprocessing, the same answer


def test_card_tensor_is_the_cards_resize_and_centre_crop_of_the_draft_decode() -> None:
    image = Image.radial_gradient("L").resize((1600, 1200)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    card = ModelCard.load(Path(__file__).resolve().parents[2] / "models" / "pretrained" / "model.json")
    tensor = card_tensor(buffer.getvalue(), card.preprocessing, card.input)
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    # 1600 x 1200 drafts to 1/4 (400 x 300), resizes to 341 x 256, crops the centre 224: the centre pixel is the
    # gradient's centre (dark), the corners of the crop are lighter; (x - 127) / 128 puts both in [-1, 1].
    grey = tensor[0] * 128 + 127
    assert grey[112, 112] < 40
    assert grey[0, 0] > grey[112, 112] + 60
    assert -1.0 <= float(tensor.min()) <= float(tensor.max()) <= 1.0


def test_card_work_holds_peers_to_each_other_and_reports_catdogs_distance(results: dict[str, Any]) -> None:
    results["work"] = "card"
    results["settings"]["work"] = "card"
    catdog = results["contenders"]["catdog"]
    for run in catdog["runs"]:
        run["answers"]["cat-cat-small.jpg"]["probabilities"] = [0.7, 0.2, 0.1]
    catdog["card_distance"] = card_distance(catdog, {"cat-cat-small.jpg": [0.72, 0.19, 0.09]})
    assert catdog["card_distance"] == pytest.approx(0.02)
    assert failures(results) == []
    table = report.markdown(results)
    assert "Work: `card`" in table
    row = next(r for r in table.splitlines() if r.startswith("| **catdog** "))
    assert "2.0e-02 (vs the peers')" in row
    triton = results["contenders"]["pytriton+batch"]
    triton["runs"][1]["answers"]["cat-cat-small.jpg"]["max_diff"] = 0.01
    triton["summary"] = report.summarise(triton, ["small"])
    assert "differ from the other peers' by 1.00e-02" in failures(results)[0]
