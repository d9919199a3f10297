"""The Open Inference Protocol ("KServe v2") in its transport-free terms, shared by the REST adapter
(service/rest/routes/v2.py) and the gRPC one (service/grpc/): metadata, and an InferRequest's input turned into
the DataPlane's work and its answers into the protocol's outputs. Each adapter parses its wire format into an
InferRequest, asks the DataPlane for the model and the span, calls `infer`, and encodes the InferResponse (or
answers the raised CatdogError on its one error path): readiness, limits, the decode pool, the batcher and the
decision rule are the ones /predict uses.

A model takes one of two inputs (both in its metadata): `image`, BYTES [-1], one encoded image file per element
(decoded and limited exactly as uploads to /predict are), or the model's own ONNX input, FP32 [-1, 3, H, W], for
clients that preprocess themselves. It answers `probabilities`, FP32 [-1, labels] in the card's label order, and
`label`, BYTES [-1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from service.dataplane.admission import Permit
from service.dataplane.dataplane import DataPlane
from service.dataplane.inference import Upload
from service.dataplane.postprocess import Answer
from service.dataplane.repository import ReadyModel
from service.errors import MalformedRequest
from service.oip.tensors import BYTES, FP32, InferRequest, InferResponse, OutputTensor
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
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    # Health and metadata.
    def server_metadata(self) -> dict[str, Any]:
        return {"name": "catdog", "version": package_version(), "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.data_plane.known(name, version)
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
            if tensor.datatype != BYTES or len(tensor.shape) != 1 or not isinstance(tensor.data, list):
                raise MalformedRequest(f"input {IMAGE_INPUT!r} is BYTES [-1], not {tensor.datatype} {tensor.shape}")
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
