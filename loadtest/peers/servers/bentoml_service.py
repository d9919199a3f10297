# Runs in its framework's venv; the project venv (where mypy runs) lacks the framework or its types.
# mypy: disable-error-code="import-not-found,import-untyped,misc,untyped-decorator"
"""BentoML 1.4.40, as its docs show it: a `@bentoml.service` class (one worker) with an `@bentoml.api` method
taking the image as a file (`Annotated[Path, ContentType("image/jpeg")]`: a multipart upload, field `file`, the
same request catdog gets), served by `bentoml serve`. Settings come in as BentoML template arguments
(`bentoml.use_arguments`, `--arg key=value`). With max_batch > 1 the method is `batchable` (BentoML's adaptive
batching, max_batch_size; its max_latency_ms is a latency SLO, not a wait, so it keeps its default).

`python -m loadtest.peers.servers.bentoml_service <common options>` turns the harness's options into that
`bentoml serve` command and execs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType

from loadtest.peers.servers.common import Classifier, arguments

ARGS = bentoml.use_arguments()
BATCH = int(getattr(ARGS, "max_batch", "1"))
Jpeg = Annotated[Path, ContentType("image/jpeg")]


def _answer(labels: list[str], row: Any) -> dict[str, Any]:
    return {"probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)}}


@bentoml.service(workers=1)
class CatdogService:
    def __init__(self) -> None:
        self.classifier = Classifier(Path(ARGS.model_dir), ARGS.model, ARGS.precision, getattr(ARGS, "work", "same"))

    if BATCH > 1:

        @bentoml.api(batchable=True, max_batch_size=BATCH)
        def predict(self, file: list[Jpeg]) -> list[dict[str, Any]]:
            probabilities = self.classifier.predict([path.read_bytes() for path in file])
            return [_answer(self.classifier.labels, row) for row in probabilities]

    else:

        @bentoml.api
        def predict(self, file: Jpeg) -> dict[str, Any]:
            return _answer(self.classifier.labels, self.classifier.predict([file.read_bytes()])[0])


def main() -> None:
    args = arguments(__doc__ or "")
    command = [
        str(Path(sys.executable).parent / "bentoml"),
        "serve",
        "loadtest.peers.servers.bentoml_service:CatdogService",
    ]
    command += ["--host", "127.0.0.1", "--port", str(args.port)]
    for key, value in {
        "model_dir": args.model_dir,
        "model": args.model,
        "max_batch": args.max_batch,
        "precision": args.precision,
        "work": args.work,
    }.items():
        command += ["--arg", f"{key}={value}"]
    os.execv(command[0], command)  # noqa: S606 (replace this process: the harness tracks one tree)


if __name__ == "__main__":
    main()
