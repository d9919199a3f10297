#!/usr/bin/env python3
"""Model-alone speed, FP32 against INT8, on one thread: numpy + onnxruntime only, model files by path.

    taskset -c 2 python3 scripts/bench_model_precision.py models/pretrained/model.onnx models/pretrained/model.int8.onnx

Runs every file on the same input (batch 1 by default), interleaved round by round so that load from other jobs
hits each alike, and prints one JSON object: the CPU's integer-dot-product features (AVX2, AVX-512 VNNI,
AVX-VNNI: which ONNX Runtime kernels INT8 gets), the ONNX Runtime version, and per file the median ms per image,
images per second and the ratio to the first file. `--exact-int8` sets ONNX Runtime's
`session.x64quantprecision=1` (what AVX2-only CPUs need to compute 8-bit weights without saturation). It leaves
the answers unchanged on VNNI CPUs but not the speed: there too it falls back to FP32's (measured 0.997x), which
is why the service sets it only where VNNI is missing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_features() -> dict[str, object]:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"model": model, **{f: f in flags for f in FEATURES}}


def make_session(path: Path, threads: int, exact_int8: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if exact_int8:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="ONNX files; the first is the baseline (FP32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=20, help="inferences per round")
    parser.add_argument("--exact-int8", action="store_true", help="session.x64quantprecision=1")
    args = parser.parse_args()

    sessions = {str(p): make_session(p, args.threads, args.exact_int8) for p in args.models}
    first = next(iter(sessions.values())).get_inputs()[0]
    shape = [args.batch, *(d if isinstance(d, int) else 1 for d in first.shape[1:])]
    feed = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    for sess in sessions.values():
        for _ in range(5):
            sess.run(None, {sess.get_inputs()[0].name: feed})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for key, sess in sessions.items():
            name = sess.get_inputs()[0].name
            start = time.perf_counter()
            for _ in range(args.runs):
                sess.run(None, {name: feed})
            times[key].append((time.perf_counter() - start) / args.runs / args.batch)
    baseline = float(np.median(times[str(args.models[0])]))
    results = {
        key: {
            "ms_per_image": round(float(np.median(t)) * 1000, 3),
            "images_per_s": round(1.0 / float(np.median(t)), 1),
            "vs_first": round(baseline / float(np.median(t)), 3),
        }
        for key, t in times.items()
    }
    print(
        json.dumps(
            {
                "cpu": cpu_features(),
                "onnxruntime": ort.__version__,
                "threads": args.threads,
                "batch": args.batch,
                "exact_int8": args.exact_int8,
                "how": f"median of {args.rounds} interleaved rounds of {args.runs} runs",
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
