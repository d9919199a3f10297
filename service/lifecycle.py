"""Where the process is in its life: starting (models loading), serving, or draining before exit."""

from __future__ import annotations

import enum


class Phase(enum.StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


class Lifecycle:
    def __init__(self) -> None:
        self.phase = Phase.STARTING

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING
