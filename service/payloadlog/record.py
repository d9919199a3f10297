"""What the data plane notes about one request for the payload log, while it serves it.

The data plane fills a `PayloadRecord` when `current()` returns one (only for sampled requests with payload
logging on; otherwise None and nothing is kept). Nothing here formats or hashes: that happens on the sender's
thread, off the request path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.errors import CatdogError


class Input(Protocol):
    """An encoded image as the client sent it (service.dataplane.inference.Upload)."""

    @property
    def data(self) -> bytes: ...

    @property
    def filename(self) -> str | None: ...


class Decoded(Protocol):
    """What decoding learnt about an image (service.dataplane.imaging.DecodedImage)."""

    @property
    def format(self) -> str: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


class Output(Protocol):
    """One answer (service.dataplane.postprocess.Answer)."""

    @property
    def label(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def probabilities(self) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the log keeps of a decoded image (not its pixels)."""

    format: str
    width: int
    height: int


@dataclass(slots=True)
class PayloadRecord:
    request_id: str
    model: str = ""  # set by the data plane once the request reaches a model; a record without one is not sent
    model_version: str = ""
    protocol: str = ""
    traceparent: str | None = None
    time: float = field(default_factory=time.time)
    uploads: Sequence[Input] = ()
    images: Sequence[Decoded] = ()
    tensor: np.ndarray | None = None
    answers: Sequence[Output] = ()
    error_code: str | None = None
    error_message: str | None = None
    status: int = 200

    def fail(self, exc: CatdogError) -> None:
        if self.error_code is None:
            self.error_code, self.error_message, self.status = exc.code, exc.message, exc.status

    def decoded(self, images: Sequence[Decoded]) -> None:
        self.images = [ImageFacts(i.format, i.width, i.height) for i in images]

    @property
    def held_bytes(self) -> int:
        """Memory this record keeps alive while queued (the request's images or tensor)."""
        tensor = 0 if self.tensor is None else int(self.tensor.nbytes)
        return sum(len(u.data) for u in self.uploads) + tensor


_CURRENT: ContextVar[PayloadRecord | None] = ContextVar("catdog_payload", default=None)


def enter(value: PayloadRecord | None) -> Token[PayloadRecord | None]:
    """Make `value` current until `leave(token)` (a transport's seam: start and finish of a request)."""
    return _CURRENT.set(value)


def leave(token: Token[PayloadRecord | None]) -> None:
    _CURRENT.reset(token)


def current() -> PayloadRecord | None:
    return _CURRENT.get()


@contextlib.contextmanager
def recording(record: PayloadRecord | None) -> Iterator[PayloadRecord | None]:
    token = _CURRENT.set(record)
    try:
        yield record
    finally:
        _CURRENT.reset(token)
