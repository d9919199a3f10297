"""What the repository hands out: `ReadyModel` (a version that takes work, every part present) and `ServedModel`
(a model's slot in any state, what /readyz and /v1/models describe). Finding, loading, swapping and unloading
versions is service/models/ (ModelStore is the repository the DataPlane holds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from service.dataplane.batching import MicroBatcher
from service.dataplane.card import ModelCard, Precision
from service.dataplane.runtime import OnnxModel

Status = Literal["loading", "ready", "failed"]


@dataclass(frozen=True, slots=True)
class ReadyModel:
    """A model that can take work, every part of it present: what a request holds for its whole life. The
    repository hands out this reference, never its slot, so a later version loaded beside it (or swapped in)
    cannot change a request already under way."""

    name: str
    card: ModelCard
    runtime: OnnxModel = field(repr=False)
    batcher: MicroBatcher = field(repr=False)
    precision: Precision
    sha256: str

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def provider(self) -> str:
        return self.runtime.provider


@dataclass
class ServedModel:
    """A repository slot, whatever its state: what /readyz and /v1/models describe. Work goes to `serving`."""

    name: str
    folder: Path
    status: Status = "loading"
    error: str | None = None
    card: ModelCard | None = None
    sha256: str | None = None
    precision: Precision | None = None
    runtime: OnnxModel | None = field(default=None, repr=False)
    serving: ReadyModel | None = field(default=None, repr=False)

    @property
    def provider(self) -> str | None:
        return self.runtime.provider if self.runtime else None
