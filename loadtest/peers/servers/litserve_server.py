# Runs in its framework's venv; the project venv (where mypy runs) lacks the framework or its types.
# mypy: disable-error-code="import-not-found,import-untyped,misc"
"""LitServe 0.2.19, as its docs show it: a LitAPI (setup / decode_request / predict / encode_response) served by
LitServer with one worker on the CPU; the upload arrives as a multipart form field (LitServe parses forms
itself). With --max-batch > 1 its own dynamic batching (LitAPI max_batch_size, batch_timeout) is on."""

from typing import Any

import litserve as ls
import numpy as np
from fastapi import Request

from loadtest.peers.servers.common import Classifier, arguments


class CatdogAPI(ls.LitAPI):
    def __init__(self, args: Any) -> None:
        super().__init__(max_batch_size=args.max_batch, batch_timeout=args.batch_wait_ms / 1000)
        self.args = args

    def setup(self, device: str) -> None:
        self.classifier = Classifier(self.args.model_dir, self.args.model, self.args.precision, self.args.work)

    def decode_request(self, request: Request) -> bytes:
        # LitServe picks the endpoint's body type from this annotation (no `from __future__ import annotations`
        # here): `Request` makes it parse the multipart form itself and pass the form in.
        return bytes(request["file"].file.read())

    def predict(self, x: Any) -> Any:
        if isinstance(x, list):
            return self.classifier.predict(x)
        return self.classifier.predict([x])[0]

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        labels = self.classifier.labels
        return {"probabilities": {label: float(p) for label, p in zip(labels, output, strict=True)}}


class BatchedCatdogAPI(CatdogAPI):
    """Batches are lists of JPEGs: each is decoded, then the tensors run as one batch."""

    def batch(self, inputs: list[bytes]) -> list[bytes]:
        return inputs

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)


def main() -> None:
    args = arguments(__doc__ or "")
    server = ls.LitServer(
        (BatchedCatdogAPI if args.max_batch > 1 else CatdogAPI)(args),
        accelerator="cpu",
        devices=1,
        workers_per_device=1,
    )
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
