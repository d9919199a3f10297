"""GET /v1/models and GET /v1/models/{name}: what the repository serves and how."""

from __future__ import annotations

from fastapi import APIRouter

from service.dataplane.repository import ServedModel
from service.errors import ModelNotFound
from service.rest.dependencies import RepositoryDep
from service.rest.schemas import ErrorResponse, InputBody, ModelBody, ModelsResponse

router = APIRouter(prefix="/v1/models", tags=["models"])


def describe(model: ServedModel) -> ModelBody:
    card = model.card
    if card is None:
        return ModelBody(name=model.name, status=model.status, error=model.error)
    return ModelBody(
        name=model.name,
        status=model.status,
        error=model.error,
        version=card.version,
        description=card.description,
        labels=card.labels,
        input=InputBody(**card.input.model_dump()),
        preprocessing=card.preprocessing.model_dump(),
        decision=card.decision.model_dump() if card.decision else None,
        sha256=model.sha256,
        provider=model.provider,
        license=card.license,
    )


@router.get("", response_model=ModelsResponse, summary="Every model in the repository")
async def list_models(repository: RepositoryDep) -> ModelsResponse:
    return ModelsResponse(models=[describe(m) for m in repository.models.values()])


@router.get(
    "/{name}",
    response_model=ModelBody,
    responses={404: {"model": ErrorResponse}},
    summary="One model's metadata",
)
async def get_model(name: str, repository: RepositoryDep) -> ModelBody:
    model = repository.models.get(name)
    if model is None:
        raise ModelNotFound(f"no model named {name!r}; see GET /v1/models")
    return describe(model)
