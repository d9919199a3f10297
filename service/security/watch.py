"""Re-read files when they change, the way a mounted Kubernetes Secret changes.

The kubelet never rewrites a mounted file: it writes a new timestamped folder (`..2026_12_04_02_10_00.123`),
points the `..data` symlink at it in one rename, and the visible names are symlinks through `..data`. So the
watch stats each path *through* its symlinks: the resolved file's device, inode, size and mtime. A swap shows as a
new inode even when size and mtime happen to match; an edit in place shows as a new mtime or size.

Checks are lazy: `current()` looks at the files at most once per interval, on the caller's thread, so there is no
task or thread to start and stop, and a change is seen by the first use after the interval (the old key is
refused from then on). A file that fails to load keeps the previous value and logs once per change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
Signature = tuple[tuple[int, int, int, int] | None, ...]


def signature(paths: Sequence[Path]) -> Signature:
    """What identifies the files' contents without reading them (None for a path that is not there now)."""
    found: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: the ..data swap changes the resolved inode
        except OSError:
            found.append(None)
            continue
        found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


class Reloading(Generic[T]):
    """A value loaded from files, reloaded when they change. `load` raises on a bad file: the old value stays."""

    def __init__(
        self,
        what: str,
        paths: Sequence[Path],
        load: Callable[[], T],
        interval_s: float,
        *,
        on_reload: Callable[[T], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.paths = tuple(paths)
        self._load = load
        self.interval_s = interval_s
        self._on_reload = on_reload
        self._on_failure = on_failure
        self._clock = clock
        self._signature = signature(self.paths)
        self.value = load()  # at start a bad file is the caller's error: there is nothing to keep
        self._next_check = clock() + interval_s
        self.reloads = 0
        self.failures = 0

    def current(self) -> T:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.interval_s
            self.refresh()
        return self.value

    def refresh(self) -> bool:
        """Reload now if the files changed; True when a new value was taken."""
        seen = signature(self.paths)
        if seen == self._signature:
            return False
        self._signature = seen  # a broken version is reported once, not on every check
        try:
            value = self._load()
        except Exception as exc:  # any failure keeps the old value; the message says why
            self.failures += 1
            if self._on_failure is not None:
                self._on_failure()
            log.error(f"{self.what}_reload_failed", error=str(exc), kept="previous")
            return False
        self.value = value
        self.reloads += 1
        if self._on_reload is not None:
            self._on_reload(value)
        log.info(f"{self.what}_reloaded", files=[str(p) for p in self.paths])
        return True
