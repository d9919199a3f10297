"""uvicorn's Server with a graceful drain suited to Kubernetes.

uvicorn alone, on SIGTERM, closes the listening socket at once (new connections are refused, not answered) and
waits `timeout_graceful_shutdown` for open connections. DrainingServer puts a drain phase in front:

1. SIGTERM: every app in the process turns DRAINING at once: /readyz answers 503 `draining`, new predictions
   answer 503 `draining` with Retry-After, every response carries `Connection: close`; requests already
   admitted go on normally.
2. For `drain_delay_s` the socket stays open (a load balancer that still routes here gets a 503, not a refused
   connection). Skipped when no app was serving yet, and for SIGINT (Ctrl+C at a terminal).
3. uvicorn's shutdown: the socket closes, idle keep-alive connections close, admitted requests get what is left
   of `drain_timeout_s` (counted from the signal) to finish; then the lifespan stops the batchers and the process
   exits. So the whole drain takes at most `drain_timeout_s` (plus a fraction of a second to exit).

A second SIGTERM or SIGINT skips what is left of the delay; a second SIGINT also stops waiting for requests.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType

import structlog
import uvicorn

from service.lifecycle import drain_all

log = structlog.get_logger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_delay_s: float, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.drain_timeout_s = drain_timeout_s
        self.drain_delay_s = min(drain_delay_s, drain_timeout_s)
        self._signalled_at: float | None = None
        self._delay_until = 0.0
        self._logged = False
        logging.getLogger("uvicorn.error").addFilter(_drop_cancelled_requests)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in a signal handler: set attributes only (no logging: its locks may be held by this very thread).
        if self._signalled_at is not None:
            self._delay_until = 0.0
            self._check_delay(time.monotonic())
            super().handle_exit(sig, frame)
            return
        self._signalled_at = time.monotonic()
        self._captured_signals.append(sig)
        was_serving = drain_all()
        if was_serving and sig != signal.SIGINT:
            self._delay_until = self._signalled_at + self.drain_delay_s
        self._check_delay(self._signalled_at)

    async def on_tick(self, counter: int) -> bool:
        if self._signalled_at is not None:
            if not self._logged:
                self._logged = True
                log.info(
                    "drain_started",
                    delay_s=round(max(0.0, self._delay_until - self._signalled_at), 3),
                    timeout_s=self.drain_timeout_s,
                    connections=len(self.server_state.connections),
                )
            self._check_delay(time.monotonic())
        return await super().on_tick(counter)

    def _check_delay(self, now: float) -> None:
        if self.should_exit or self._signalled_at is None or now < self._delay_until:
            return
        # What is left of the budget goes to the requests still running; a little is kept for the lifespan's
        # shutdown (batchers) so the process is gone within drain_timeout_s of the signal.
        reserve = min(1.0, self.drain_timeout_s / 10)
        left = self.drain_timeout_s - (now - self._signalled_at) - reserve
        self.config.timeout_graceful_shutdown = max(0.0, left)  # type: ignore[assignment]
        self.should_exit = True


def _drop_cancelled_requests(record: logging.LogRecord) -> bool:
    """uvicorn logs every request it cancels at the drain deadline with a full traceback ("Exception in ASGI
    application"), tens of milliseconds each: with a queue of them the exit would overrun the drain timeout.
    Its one line "Cancel N running task(s)" already says it all."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, asyncio.CancelledError)
