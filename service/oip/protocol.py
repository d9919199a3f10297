"""The Open Inference Protocol ("KServe v2") in its transport-free terms, shared by the REST adapter
(service/rest/routes/v2.py) and the gRPC one (service/grpc/): metadata, and an InferRequest's input turned into
the DataPlane's work and its answers into the protocol's outputs. Each adapter parses its wire format into an
InferRequest, asks the DataPlane for the model and the span, calls `infer`, and encodes the InferResponse (or
answers the raised CatdogError on its one error path): readiness, limits, the decode pool, the batcher and the
decision rule are the ones /predict uses.

A model takes one of two inputs (both in its metadata): `image`, BYTES [-1, 1] as Triton batches it (or [-1]), one
encoded image file per element (decoded and limited exactly as uploads to /predict are), or the model's own ONNX
input, FP32 [-1, 3, H, W], for clients that preprocess themselves. It answers `probabilities`, FP32 [-1, labels] in
the card's label order (or, asked with `classification: k`, BYTES [-1, k]: service/oip/classification.py), and
`label`, BYTES [-1]. Triton's extensions beside: model configuration (service/oip/config.py) and statistics
(service/oip/statistics.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.dataplane.admission import Permit
from service.dataplane.dataplane import DataPlane
from service.dataplane.inference import Upload
from service.dataplane.postprocess import Answer
from service.dataplane.repository import ReadyModel, ServedModel
from service.errors import MalformedRequest, ModelNotFound
from service.oip import config as model_configuration
from service.oip.classification import class_count, classify
from service.oip.config import IMAGE_INPUT, LABEL, PLATFORM, PROBABILITIES, triton_version
from service.oip.statistics import model_statistics
from service.oip.tensors import BYTES, FP32, InferRequest, InferResponse, OutputTensor
from service.version import package_version

OUTPUTS = (PROBABILITIES, LABEL)
# Exactly what is implemented: Triton's binary tensors, classification, model configuration and statistics.
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]

Note = Callable[..., None]


def _no_note(**fields: Any) -> None:
    return None


class OpenInference:
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    # Health and metadata.
    def server_metadata(self) -> dict[str, Any]:
        return {"name": "catdog", "version": package_version(), "extensions": list(EXTENSIONS)}

    def version(self, name: str, version: str | None) -> str | None:
        """The version a client named, as the data plane knows it: Triton's number of the served version ("2" for
        a card's "2.0.0", service/oip/config.py) becomes the card's string; anything else is left as it is."""
        if version:
            model = self.data_plane.repository.models.get(name)
            if model is not None and model.card is not None and version == triton_version(model.card.version):
                return model.card.version
        return version

    def known(self, name: str, version: str | None) -> ServedModel:
        """The model a metadata call names, with Triton's wording for an unknown one (its example clients and
        tools look for it)."""
        try:
            return self.data_plane.known(name, self.version(name, version))
        except ModelNotFound as exc:
            if name in self.data_plane.repository.models:
                raise
            raise ModelNotFound(f"Request for unknown model: {name!r} is not found (see GET /v1/models)") from exc

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.known(name, version)
        if model.card is None:  # a broken model.json: listed, but with nothing to describe
            return {"name": name, "versions": [], "platform": PLATFORM, "inputs": [], "outputs": []}
        card = model.card
        return {
            "name": name,
            "versions": list(self.data_plane.repository.versions(name)) or [card.version],
            "platform": PLATFORM,
            "inputs": [
                # Triton's shape (the batch, then the configuration's dims [1]); [N] is accepted as well.
                {"name": IMAGE_INPUT, "datatype": BYTES, "shape": [-1, 1]},
                {"name": card.input.name, "datatype": FP32, "shape": [-1, 3, card.input.height, card.input.width]},
            ],
            "outputs": [
                {"name": PROBABILITIES, "datatype": FP32, "shape": [-1, len(card.labels)]},
                {"name": LABEL, "datatype": BYTES, "shape": [-1]},
            ],
        }

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's model configuration of a model (service/oip/config.py); 404 for one without a usable card."""
        model = self.known(name, version)
        if model.card is None:
            raise ModelNotFound(f"model {name!r} has no usable model.json: {model.error or 'unreadable'}")
        settings = self.data_plane.settings
        return model_configuration.model_config(
            name,
            model.card,
            max_batch_size=settings.max_files_per_request,
            batch_max_size=settings.batch_max_size,
            batch_max_wait_ms=settings.batch_max_wait_ms,
        )

    def statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        """`{"model_stats": [...]}` for one model, or for every ready one when `name` is empty."""
        # Every model serving now, as Triton lists its loaded ones; a named one even while loading or failed.
        models = self.data_plane.repository.models
        chosen = [self.known(name, version)] if name else [m for _, m in sorted(models.items()) if m.serving]
        tally = self.data_plane.metrics.tally
        stats = [model_statistics(tally, m.name, triton_version(m.card.version)) for m in chosen if m.card]
        return {"model_stats": stats}

    # Inference.
    async def infer(
        self, model: ReadyModel, request: InferRequest, permit: Permit | None = None, note: Note = _no_note
    ) -> InferResponse:
        """Classify the request's one input (images or a tensor) and build the requested outputs."""
        card = model.card
        wanted = self._wanted_outputs(request)
        if len(request.inputs) != 1:
            names = [i.name for i in request.inputs]
            raise MalformedRequest(
                f"send exactly one input, {IMAGE_INPUT!r} (BYTES) or {card.input.name!r} (FP32), not {names}"
            )
        tensor = request.inputs[0]
        if tensor.name == IMAGE_INPUT:
            # [N], or Triton's [N, 1] (its model configuration leaves the batch dimension out: dims [1]).
            flat = len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)
            if tensor.datatype != BYTES or not flat or not isinstance(tensor.data, list):
                raise MalformedRequest(
                    f"input {IMAGE_INPUT!r} is BYTES [-1] or [-1, 1], not {tensor.datatype} {tensor.shape}"
                )
            uploads = [Upload(element) for element in tensor.data]
            predictions = await self.data_plane.classify(model, uploads, permit)
            answers = [p.answer for p in predictions]
            note(
                model=model.name,
                images=len(predictions),
                image_bytes=[p.image.num_bytes for p in predictions],
                width=[p.image.width for p in predictions],
                height=[p.image.height for p in predictions],
            )
        elif tensor.name == card.input.name:
            if tensor.datatype != FP32 or not isinstance(tensor.data, np.ndarray):
                raise MalformedRequest(f"input {tensor.name!r} is FP32, not {tensor.datatype} {tensor.shape}")
            batch = tensor.data.reshape(tensor.shape)
            answers = await self.data_plane.classify_tensors(model, batch, permit, name=tensor.name)
            note(model=model.name, images=len(answers), input=tensor.name)
        else:
            raise MalformedRequest(
                f"model {model.name!r} has no input {tensor.name!r}; its inputs are "
                f"{IMAGE_INPUT!r} (BYTES [-1]) and {card.input.name!r} (FP32 [-1, 3, {card.input.height}, "
                f"{card.input.width}])"
            )
        note(label=[a.label for a in answers], confidence=[round(a.confidence, 4) for a in answers])
        outputs = _outputs(answers, card.labels)
        answer = []
        for name, k in wanted:
            answer.append(outputs[name] if k is None else classify(outputs[name], k, card.labels))
        return InferResponse(model.name, card.version, request.id, answer)

    def _wanted_outputs(self, request: InferRequest) -> list[tuple[str, int | None]]:
        """(output, classification count or None), in the order asked; every parameter known or refused (400)."""
        if request.outputs is None:
            return [(name, None) for name in OUTPUTS]
        wanted: list[tuple[str, int | None]] = []
        for output in request.outputs:
            if output.name not in OUTPUTS:
                raise MalformedRequest(f"no output named {output.name!r}; the outputs are {list(OUTPUTS)}")
            if unknown := sorted(set(output.parameters) - {"classification"}):
                raise MalformedRequest(
                    f"output {output.name!r}: unknown parameter(s) {unknown}; catdog knows 'classification' "
                    "(and 'binary_data' over REST)"
                )
            k = class_count(output.name, output.parameters)
            if k is not None and output.name != PROBABILITIES:
                raise MalformedRequest(f"output {output.name!r} is BYTES: only {PROBABILITIES!r} can be classified")
            if output.name not in [name for name, _ in wanted]:
                wanted.append((output.name, k))
        return wanted


def _outputs(answers: list[Answer], labels: list[str]) -> dict[str, OutputTensor]:
    probabilities = np.array([[a.probabilities[label] for label in labels] for a in answers], dtype=np.float32)
    return {
        PROBABILITIES: OutputTensor(PROBABILITIES, FP32, [len(answers), len(labels)], probabilities),
        LABEL: OutputTensor(LABEL, BYTES, [len(answers)], [a.label.encode("utf-8") for a in answers]),
    }
