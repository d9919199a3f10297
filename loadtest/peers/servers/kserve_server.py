# Runs in its framework's venv; the project venv (where mypy runs) lacks the framework or its types.
# mypy: disable-error-code="import-not-found,import-untyped,misc"
"""KServe 0.21 ModelServer, as its custom-model docs show it: a `kserve.Model` subclass with load() and a
synchronous predict() on an Open Inference Protocol (v2) request, started by `ModelServer().start([model])` with
one worker. The JPEG travels as a BYTES tensor in JSON, base64-encoded: KServe's REST binary tensor extension
turns BYTES into UTF-8 strings, which raw JPEG bytes are not. The ModelServer has no batching of its own (KServe's
batcher is the InferenceService's agent sidecar), and it always binds 0.0.0.0."""

from __future__ import annotations

import base64
from typing import Any

import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

from loadtest.peers.servers.common import Classifier, arguments


class CatdogModel(kserve.Model):
    def __init__(self, name: str, args: Any) -> None:
        super().__init__(name)
        self.args = args
        self.load()

    def load(self) -> bool:
        self.classifier = Classifier(self.args.model_dir, self.args.model, self.args.precision, self.args.work)
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        images = [base64.b64decode(item) for item in payload.inputs[0].data]
        probabilities = self.classifier.predict(images)
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
        output.set_data_from_numpy(probabilities, binary_data=False)
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=[output])


def main() -> None:
    args = arguments(__doc__ or "")
    model = CatdogModel(args.model, args)
    kserve.ModelServer(http_port=args.port, grpc_port=args.ports[0], workers=1).start([model])


if __name__ == "__main__":
    main()
