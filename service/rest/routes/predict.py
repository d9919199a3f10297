"""POST /predict/{pretrained,scratch} (the seed's routes) and POST /v1/models/{name}/predict."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.dataplane.admission import Stage
from service.dataplane.dataplane import DataPlane
from service.dataplane.inference import Prediction
from service.rest.admission import permit_of
from service.rest.requests import declared_body_bytes, note, parse_timeout, request_id_of
from service.rest.schemas import ErrorResponse, MultiPredictResponse, PredictionBody, PredictResponse
from service.rest.uploads import read_uploads
from service.tracing import context as tracing

SEED_MODELS = ("pretrained", "scratch")
PROTOCOL = "catdog"  # the `protocol` label of catdog_request_duration_seconds for these routes

IMAGE_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One image as multipart field `file` (repeat the field for several images), "
        "or one image as the raw body. JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "empty, undecodable or malformed input",
        404: "unknown model",
        413: "too many bytes, pixels or files",
        415: "not a supported image type",
        422: "no file in the request",
        503: "not ready, overloaded or draining (see Retry-After)",
        504: "the request deadline passed",
    }.items()
}


async def predict(data_plane: DataPlane, name: str, request: Request, version: str | None = None) -> Response:
    """Parse, admit, read, classify, encode. The answer is serialised here, once, by pydantic-core: FastAPI would
    otherwise validate the returned model against the Union response_model again (about a tenth of the event
    loop's time per request)."""
    model = data_plane.model_for_work(name, version)  # the latest ready version unless one is asked for
    note(request, model=name)
    # Admitted before the body is read, by the door (service/rest/admission.py) or, without it, by the span.
    timeout = parse_timeout(request.headers.get("x-request-timeout"))
    max_bytes = data_plane.settings.max_upload_bytes
    body_bytes = declared_body_bytes(request.headers.get("content-length"), max_bytes)
    span = data_plane.span(model, PROTOCOL, permit=permit_of(request.scope), timeout_s=timeout, body_bytes=body_bytes)
    async with span as permit:
        with permit.track(Stage.READING):
            uploads = await read_uploads(request, max_bytes=max_bytes)
        predictions = await data_plane.classify(model, uploads, permit)
    _note_predictions(request, predictions)
    with tracing.stage("catdog.encode"):
        bodies = [_body(p) for p in predictions]
        request_id = request_id_of(request)
        answer: PredictResponse | MultiPredictResponse
        if len(bodies) == 1:
            answer = PredictResponse(
                model=name, model_version=model.version, request_id=request_id, **bodies[0].model_dump()
            )
        else:
            answer = MultiPredictResponse(
                model=name, model_version=model.version, request_id=request_id, predictions=bodies
            )
        content = answer.model_dump_json()
    return Response(content, media_type="application/json")


def _body(prediction: Prediction) -> PredictionBody:
    return PredictionBody(
        label=prediction.answer.label,
        confidence=prediction.answer.confidence,
        probabilities=prediction.answer.probabilities,
        filename=prediction.filename,
        width=prediction.image.width,
        height=prediction.image.height,
    )


def _note_predictions(request: Request, predictions: list[Prediction]) -> None:
    if len(predictions) == 1:
        p = predictions[0]
        note(
            request,
            label=p.answer.label,
            confidence=round(p.answer.confidence, 4),
            image_bytes=p.image.num_bytes,
            width=p.image.width,
            height=p.image.height,
            format=p.image.format,
        )
        return
    note(
        request,
        images=len(predictions),
        label=[p.answer.label for p in predictions],
        confidence=[round(p.answer.confidence, 4) for p in predictions],
        image_bytes=[p.image.num_bytes for p in predictions],
        width=[p.image.width for p in predictions],
        height=[p.image.height for p in predictions],
    )


def router(data_plane: DataPlane) -> APIRouter:
    """POST /v1/models/{name}/predict and the seed's /predict/{pretrained,scratch}, over `data_plane`."""
    routes = APIRouter(tags=["predict"])

    async def predict_any(name: str, request: Request) -> Response:
        """The answer is serialised here, once, by pydantic-core: FastAPI would otherwise validate the returned model
        against the Union response_model again (about a tenth of the event loop's time per request)."""
        return await predict(data_plane, name, request)

    routes.add_api_route(
        "/v1/models/{name}/predict",
        predict_any,
        methods=["POST"],
        response_model=PredictResponse | MultiPredictResponse,
        responses=ERRORS,
        openapi_extra=IMAGE_REQUEST_BODY,
        summary="Classify images with any model in the repository",
        operation_id="predict_v1_models__name__predict_post",
    )

    async def predict_version(name: str, version: str, request: Request) -> Response:
        return await predict(data_plane, name, request, version)

    routes.add_api_route(
        "/v1/models/{name}/versions/{version}/predict",
        predict_version,
        methods=["POST"],
        response_model=PredictResponse | MultiPredictResponse,
        responses=ERRORS,
        openapi_extra=IMAGE_REQUEST_BODY,
        summary="Classify images with one version of a model",
        operation_id="predict_version",
    )
    for name in SEED_MODELS:
        routes.add_api_route(
            f"/predict/{name}",
            _seed_route(data_plane, name),
            methods=["POST"],
            response_model=PredictResponse | MultiPredictResponse,
            responses=ERRORS,
            openapi_extra=IMAGE_REQUEST_BODY,
            summary=f"Classify images with the {name} model (the seed's route)",
            operation_id=f"predict_{name}",
        )
    return routes


def _seed_route(data_plane: DataPlane, model_name: str) -> Any:
    async def seed_predict(request: Request) -> Response:
        return await predict(data_plane, model_name, request)

    return seed_predict
