"""The in-process limit: catdog's own decode + preprocess + ONNX Runtime work on one image at a time in a tight
loop, no HTTP and no event loop. The benchmark runs it under `taskset` on the server's core(s), so
catdog-over-HTTP divided by this is the share of the core the serving layer leaves to the model.

It takes the same images, in the same turn, as the servers' load: the bench's two photos of a size cost
different amounts to decode (the 9 MP dog, 1.5 MB, about 22 ms; the 9 MP cat, 0.6 MB, about 13 ms), so a
limit measured on one of them is not the limit of the load the servers get.

python -m loadtest.bench_limit MODEL_DIR MODEL IMAGE [IMAGE...] [--seconds S] [--threads N] [--batch B]
  [--precision P] -> JSON line
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Literal

import numpy as np

from service.dataplane.card import ModelCard
from service.dataplane.cpu import this_cpu
from service.dataplane.imaging import ImageLimits, load_tensor
from service.dataplane.runtime import CPU, OnnxModel


def measure(
    model_dir: Path,
    model: str,
    images: list[Path],
    seconds: float,
    threads: int,
    batch: int,
    precision: Literal["auto", "fp32", "int8"] = "auto",
) -> dict[str, float]:
    card = ModelCard.load(model_dir / model / "model.json")
    served = card.resolve(precision, int8_native=this_cpu().native)  # as CATDOG_PRECISION picks it here
    runtime = OnnxModel(
        model_dir / model / served.file,
        input_name=card.input.name,
        output_name=card.output.name,
        providers=[CPU],
        intra_op_threads=threads,
        exact_int8=served.exact_int8,
    )
    files = itertools.cycle([image.read_bytes() for image in images])
    limits = ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=100_000_000)

    def one_batch() -> None:
        tensors = [load_tensor(next(files), card.preprocessing, card.input, limits)[0] for _ in range(batch)]
        runtime.run(np.stack(tensors))

    for _ in range(2 * len(images)):
        one_batch()
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or done % len(images):  # whole turns: every image as often
        one_batch()
        done += batch
    elapsed = time.perf_counter() - started
    turns = 5 * len(images)
    t0 = time.perf_counter()
    for _ in range(turns):
        load_tensor(next(files), card.preprocessing, card.input, limits)
    decode_s = (time.perf_counter() - t0) / turns
    return {"images_per_s": done / elapsed, "preprocess_ms": decode_s * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("model")
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"))
    args = parser.parse_args()
    result = measure(args.model_dir, args.model, args.images, args.seconds, args.threads, args.batch, args.precision)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
