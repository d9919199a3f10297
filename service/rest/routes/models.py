"""GET /v1/models and GET /v1/models/{name}: what the repository serves and how."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from service.dataplane.repository import ServedModel
from service.errors import ModelNotFound
from service.rest.dependencies import RepositoryDep
from service.rest.schemas import ErrorResponse, HeldOutBody, InputBody, ModelBody, ModelsResponse

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
        precision=model.precision,
        precisions=list(card.precisions),
        license=card.license,
        heldout=_heldout(card.model_extra or {}),
        caveat=(card.model_extra or {}).get("caveat"),
    )


def _heldout(extra: dict[str, Any]) -> HeldOutBody | None:
    """The card's held-out summary, when it has one that reads (a card's extra sections are not validated)."""
    section = extra.get("heldout")
    if not isinstance(section, dict):
        return None
    try:
        return HeldOutBody.model_validate(section)
    except ValidationError:
        return None


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
