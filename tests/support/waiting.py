"""Wait for what a test asserts, with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.05, what: str = "") -> T:
    """The first truthy value `check` returns; AssertionError naming `what` past the deadline."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or check}; last: {last!r}")
        time.sleep(interval)
        last = check()
    return last
