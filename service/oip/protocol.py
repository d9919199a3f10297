"""The Open Inference Protocol ("KServe v2") over the protocol-free data plane, shared by the REST adapter
(service/rest/routes/v2.py) and the gRPC one (service/grpc/). Each adapter only parses its wire format into an
InferRequest, calls `OpenInference`, and encodes the InferResponse or maps the raised CatdogError
(service/oip/errors.py): readiness, limits, the decode pool, the batcher and the decision rule are the ones
/predict uses.

A model takes one of two inputs (both in its metadata): `image`, BYTES [-1], one encoded image file per element
(decoded and limited exactly as uploads to /predict are), or the model's own ONNX input, FP32 [-1, 3, H, W], for
clients that preprocess themselves. It answers `probabilities`, FP32 [-1, labels] in the card's label order, and
`label`, BYTES [-1].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from service.dataplane.admission import Permit
from service.dataplane.inference import Classifier, Upload, inference_span
from service.dataplane.postprocess import Answer
from service.dataplane.repository import ModelRepository, ServedModel
from service.errors import Draining, EmptyInput, MalformedRequest, ModelNotFound, TooManyFiles
from service.lifecycle import Lifecycle
from service.observability import ServiceMetrics
from service.oip.tensors import BYTES, FP32, InferRequest, InferResponse, OutputTensor
from service.settings import Settings
from service.version import package_version

IMAGE_INPUT = "image"
PROBABILITIES = "probabilities"
LABEL = "label"
OUTPUTS = (PROBABILITIES, LABEL)
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data"]

Note = Callable[..., None]


def _no_note(**fields: Any) -> None:
    return None


class OpenInference:
    def __init__(
        self,
        settings: Settings,
        repository: ModelRepository,
        classifier: Classifier,
        lifecycle: Lifecycle,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.classifier = classifier
        self.lifecycle = lifecycle
        self.metrics = metrics

    # Health and metadata.
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """The same rule as /readyz: models loaded (all or at least one, by setting) and not draining."""
        return self.repository.ready and not self.lifecycle.draining

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "catdog", "version": package_version(), "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str | None) -> bool:
        """False for a model that is loading or failed; ModelNotFound (404) for one the repository lacks."""
        model = self._known(name, version)
        return model.status == "ready" and model.batcher is not None and not self.lifecycle.draining

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self._known(name, version)
        if model.card is None:  # a broken model.json: listed, but with nothing to describe
            return {"name": name, "versions": [], "platform": PLATFORM, "inputs": [], "outputs": []}
        card = model.card
        return {
            "name": name,
            "versions": [card.version],
            "platform": PLATFORM,
            "inputs": [
                {"name": IMAGE_INPUT, "datatype": BYTES, "shape": [-1]},
                {"name": card.input.name, "datatype": FP32, "shape": [-1, 3, card.input.height, card.input.width]},
            ],
            "outputs": [
                {"name": PROBABILITIES, "datatype": FP32, "shape": [-1, len(card.labels)]},
                {"name": LABEL, "datatype": BYTES, "shape": [-1]},
            ],
        }

    def _known(self, name: str, version: str | None) -> ServedModel:
        model = self.repository.models.get(name)
        if model is None:
            raise ModelNotFound(f"no model named {name!r}; see GET /v1/models")
        if version and model.card is not None and version != model.card.version:
            raise ModelNotFound(f"model {name!r} has no version {version!r} (it serves {model.card.version!r})")
        return model

    # Inference.
    def model_for_inference(self, name: str, version: str | None) -> ServedModel:
        """Refuse before any body is read: draining (503), unknown model or version (404), not ready (503)."""
        if self.lifecycle.draining:
            raise Draining("the service is shutting down; retry on another replica")
        model = self.repository.get(name)
        self._known(name, version)
        return model

    def request(
        self,
        model: ServedModel,
        protocol: str,
        *,
        permit: Permit | None = None,
        timeout_s: float | None = None,
        body_bytes: int | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Permit]:
        """One inference request's span (service/dataplane/inference.py, the same as /predict's)."""
        return inference_span(
            self.classifier,
            self.settings,
            model.name,
            protocol,
            permit=permit,
            timeout_s=timeout_s,
            body_bytes=body_bytes,
        )

    async def infer(
        self, model: ServedModel, request: InferRequest, permit: Permit | None = None, note: Note = _no_note
    ) -> InferResponse:
        """Classify the request's one input (images or a tensor) and build the requested outputs."""
        assert model.card is not None
        card = model.card
        wanted = self._wanted_outputs(request)
        if len(request.inputs) != 1:
            names = [i.name for i in request.inputs]
            raise MalformedRequest(
                f"send exactly one input, {IMAGE_INPUT!r} (BYTES) or {card.input.name!r} (FP32), not {names}"
            )
        tensor = request.inputs[0]
        max_files = self.settings.max_files_per_request
        if tensor.name == IMAGE_INPUT:
            if tensor.datatype != BYTES or len(tensor.shape) != 1 or not isinstance(tensor.data, list):
                raise MalformedRequest(f"input {IMAGE_INPUT!r} is BYTES [-1], not {tensor.datatype} {tensor.shape}")
            if not tensor.data:
                raise EmptyInput(f"input {IMAGE_INPUT!r} holds no image")
            if len(tensor.data) > max_files:
                raise TooManyFiles(f"{len(tensor.data)} images in one request; the limit is {max_files}")
            if empty := [str(i) for i, element in enumerate(tensor.data) if not element]:
                raise EmptyInput(f"input {IMAGE_INPUT!r}: empty element(s) {', '.join(empty)}")
            predictions = await self.classifier.classify(model, [Upload(element) for element in tensor.data], permit)
            answers = [p.answer for p in predictions]
            note(
                model=model.name,
                images=len(predictions),
                image_bytes=[p.image.num_bytes for p in predictions],
                width=[p.image.width for p in predictions],
                height=[p.image.height for p in predictions],
            )
        elif tensor.name == card.input.name:
            expected = [3, card.input.height, card.input.width]
            if tensor.datatype != FP32 or len(tensor.shape) != 4 or tensor.shape[1:] != expected:
                raise MalformedRequest(
                    f"input {tensor.name!r} is FP32 [-1, {', '.join(map(str, expected))}], "
                    f"not {tensor.datatype} {tensor.shape}"
                )
            if not tensor.shape[0]:
                raise EmptyInput(f"input {tensor.name!r} holds no image")
            if tensor.shape[0] > max_files:
                raise TooManyFiles(f"{tensor.shape[0]} images in one request; the limit is {max_files}")
            assert isinstance(tensor.data, np.ndarray)
            answers = await self.classifier.classify_tensors(model, tensor.data.reshape(tensor.shape), permit)
            note(model=model.name, images=len(answers), input=tensor.name)
        else:
            raise MalformedRequest(
                f"model {model.name!r} has no input {tensor.name!r}; its inputs are "
                f"{IMAGE_INPUT!r} (BYTES [-1]) and {card.input.name!r} (FP32 [-1, 3, {card.input.height}, "
                f"{card.input.width}])"
            )
        note(label=[a.label for a in answers], confidence=[round(a.confidence, 4) for a in answers])
        outputs = _outputs(answers, card.labels)
        return InferResponse(model.name, card.version, request.id, [outputs[name] for name in wanted])

    def _wanted_outputs(self, request: InferRequest) -> list[str]:
        if request.outputs is None:
            return list(OUTPUTS)
        wanted = []
        for output in request.outputs:
            if output.name not in OUTPUTS:
                raise MalformedRequest(f"no output named {output.name!r}; the outputs are {list(OUTPUTS)}")
            if output.name not in wanted:
                wanted.append(output.name)
        return wanted


def _outputs(answers: list[Answer], labels: list[str]) -> dict[str, OutputTensor]:
    probabilities = np.array([[a.probabilities[label] for label in labels] for a in answers], dtype=np.float32)
    return {
        PROBABILITIES: OutputTensor(PROBABILITIES, FP32, [len(answers), len(labels)], probabilities),
        LABEL: OutputTensor(LABEL, BYTES, [len(answers)], [a.label.encode("utf-8") for a in answers]),
    }
