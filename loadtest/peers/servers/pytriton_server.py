# Runs in its framework's venv; the project venv (where mypy runs) lacks the framework or its types.
# mypy: disable-error-code="import-not-found,import-untyped,misc,untyped-decorator"
"""Triton Inference Server 2.51 through PyTriton 0.7, as PyTriton's docs show it: `Triton().bind()` an inference
callable (Triton's Python backend runs it through PyTriton's proxy), then `serve()`. The JPEG travels as a
BYTES tensor with Triton's binary tensor extension (Open Inference Protocol JSON header, raw bytes after it);
the answer comes back as JSON. Batching off: `ModelConfig(batching=False)`, one request per call. On: Triton's
dynamic batcher (max batch --max-batch, queue delay --batch-wait-ms) and PyTriton's `@batch` decorator.

Needs LD_LIBRARY_PATH on the lib/ folder of the interpreter the venv was made from (the backend stub links
libpython3.11 by soname), and a workspace path that does not exist yet: the harness sets both."""

from __future__ import annotations

from typing import Any

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

from loadtest.peers.servers.common import Classifier, arguments


def main() -> None:
    args = arguments(__doc__ or "")
    classifier = Classifier(args.model_dir, args.model, args.precision, args.work)

    @batch
    def infer_batch(image: np.ndarray) -> dict[str, np.ndarray]:
        return {"probabilities": classifier.predict([bytes(item) for item in image[:, 0]])}

    def infer_each(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return [{"probabilities": classifier.predict([bytes(request["image"][0])])[0]} for request in requests]

    if args.max_batch > 1:
        delay_us = int(args.batch_wait_ms * 1000)
        config = ModelConfig(
            max_batch_size=args.max_batch, batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us)
        )
        infer: Any = infer_batch
    else:
        config, infer = ModelConfig(batching=False), infer_each
    http_port, (grpc_port, metrics_port) = args.port, args.ports[:2]
    triton_config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http_port,
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=metrics_port,
    )
    # Statistics readable without PyTriton's access token, as in Triton itself: perf_analyzer (make bench-triton)
    # reads them for its server-side figures. The other endpoints PyTriton protects stay protected.
    protected = [e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"]
    security = TritonSecurityConfig(restricted_endpoints=protected)
    with Triton(config=triton_config, workspace=args.workdir, security_config=security) as triton:
        triton.bind(
            model_name=args.model,
            infer_func=infer,
            inputs=[Tensor(name="image", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(len(classifier.labels),))],
            config=config,
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
