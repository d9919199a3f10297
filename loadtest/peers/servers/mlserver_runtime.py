# Runs in its framework's venv; the project venv (where mypy runs) lacks the framework or its types.
# mypy: disable-error-code="import-not-found,import-untyped,misc"
"""MLServer 1.7.1, as its custom-runtime docs show it: an `MLModel` subclass (async load / predict on an Open
Inference Protocol request) named in model-settings.json and served by `mlserver start <folder>` with its
default single inference worker process. The JPEG travels as a BYTES tensor in JSON with MLServer's `base64`
content type, decoded by its own codec. With max_batch > 1 MLServer's adaptive batching is on
(model-settings max_batch_size, max_batch_time).

`python -m loadtest.peers.servers.mlserver_runtime <common options>` writes settings.json and
model-settings.json into --workdir and execs `mlserver start` there (MLServer writes .envs/ and .metrics/ into
its working directory)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from mlserver import MLModel
from mlserver.codecs import Base64Codec, NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

from loadtest.peers.servers.common import Classifier, arguments


class CatdogRuntime(MLModel):
    async def load(self) -> bool:
        extra: dict[str, Any] = self.settings.parameters.extra
        self.classifier = Classifier(Path(extra["model_dir"]), extra["model"], extra["precision"], extra["work"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        images = self.decode(payload.inputs[0], default_codec=Base64Codec)
        probabilities = self.classifier.predict(list(images))
        output = NumpyCodec.encode_output("probabilities", probabilities)
        return InferenceResponse(model_name=self.name, outputs=[output])


def main() -> None:
    args = arguments(__doc__ or "")
    folder: Path = args.workdir
    folder.mkdir(parents=True, exist_ok=True)
    grpc_port, metrics_port = args.ports[:2]
    settings = {"host": "127.0.0.1", "http_port": args.port, "grpc_port": grpc_port, "metrics_port": metrics_port}
    model: dict[str, Any] = {
        "name": args.model,
        "implementation": "loadtest.peers.servers.mlserver_runtime.CatdogRuntime",
        "parameters": {
            "extra": {
                "model_dir": str(args.model_dir.resolve()),
                "model": args.model,
                "precision": args.precision,
                "work": args.work,
            }
        },
    }
    if args.max_batch > 1:
        model |= {"max_batch_size": args.max_batch, "max_batch_time": args.batch_wait_ms / 1000}
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / args.model).mkdir(exist_ok=True)
    (folder / args.model / "model-settings.json").write_text(json.dumps(model))
    os.chdir(folder)
    command = [str(Path(sys.executable).parent / "mlserver"), "start", str(folder)]
    os.execv(command[0], command)  # noqa: S606 (replace this process: the harness tracks one tree)


if __name__ == "__main__":
    main()
