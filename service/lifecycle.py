"""Where the process is in its life: starting (models loading), serving, or draining before exit.

Every app built in this process registers its Lifecycle here, so the server's signal handler
(service/server.py) can turn them all to DRAINING the moment SIGTERM arrives, before the socket closes.
"""

from __future__ import annotations

import enum
import time
import weakref


class Phase(enum.StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


_LIVE: weakref.WeakSet[Lifecycle] = weakref.WeakSet()


class Lifecycle:
    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.drain_started: float | None = None  # time.monotonic() when draining began
        _LIVE.add(self)

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    def begin_drain(self) -> None:
        """Readiness turns 503 and new predictions are refused from now on; requests already admitted finish.
        Safe to call from a signal handler (it only sets attributes) and more than once."""
        if self.phase is not Phase.DRAINING:
            self.drain_started = time.monotonic()
            self.phase = Phase.DRAINING


def drain_all() -> bool:
    """Begin draining every app in this process; True when one of them was serving (so in a load balancer)."""
    lifecycles = list(_LIVE)
    was_serving = any(lc.phase is Phase.SERVING for lc in lifecycles)
    for lifecycle in lifecycles:
        lifecycle.begin_drain()
    return was_serving
