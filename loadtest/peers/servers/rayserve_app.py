# Runs in its framework's venv; the project venv (where mypy runs) lacks the framework or its types.
# mypy: disable-error-code="import-not-found,import-untyped,misc,untyped-decorator,attr-defined"
"""Ray Serve 2.60, as its docs show it: a `@serve.deployment` class (one replica) whose `async __call__` takes the
Starlette request (the JPEG is the raw HTTP body) and returns a Starlette JSONResponse, started with
`serve.run`. (A returned dict reaches the client chunked; a Response keeps its Content-Length, which the load
generator reads.) With
max_batch > 1 the work goes through `@serve.batch` (max_batch_size, batch_wait_timeout_s set per replica).

Ray starts a local cluster (GCS, raylet, dashboard agents, the Serve controller, the HTTP proxy and the
replica: about ten processes), all under the harness's taskset pin; ready in 13-16 s on this machine."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from loadtest.peers.servers.common import Classifier, arguments


@serve.deployment(num_replicas=1)
class Catdog:
    def __init__(
        self, model_dir: str, model: str, precision: Any, max_batch: int, batch_wait_ms: float, work: Any
    ) -> None:
        self.classifier = Classifier(Path(model_dir), model, precision, work)
        self.batching = max_batch > 1
        if self.batching:
            self.predict_batch.set_max_batch_size(max_batch)
            self.predict_batch.set_batch_wait_timeout_s(batch_wait_ms / 1000)

    def answer(self, row: Any) -> dict[str, Any]:
        labels = self.classifier.labels
        return {"probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)}}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def predict_batch(self, images: list[bytes]) -> list[dict[str, Any]]:
        return [self.answer(row) for row in self.classifier.predict(images)]

    async def __call__(self, request: Request) -> JSONResponse:
        data = await request.body()
        if self.batching:
            return JSONResponse(await self.predict_batch(data))
        return JSONResponse(self.answer(self.classifier.predict([data])[0]))


def main() -> None:
    args = arguments(__doc__ or "")
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=str(args.workdir.resolve()))
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    model_dir = str(args.model_dir.resolve())
    app = Catdog.bind(model_dir, args.model, args.precision, args.max_batch, args.batch_wait_ms, args.work)
    serve.run(app, name="catdog", route_prefix="/predict")
    signal.pause()  # serve until the harness kills the process group


if __name__ == "__main__":
    main()
