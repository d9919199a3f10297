"""The worker threads' priority: decode and inference yield the core to the event loop, which answers the door."""

from __future__ import annotations

import contextlib
import os
import threading

WORKER_NICE = 19  # decode and inference threads yield the core to the event loop (see lower_thread_priority)


def lower_thread_priority() -> None:
    """Run the calling thread (a decode or inference worker) at a lower priority than the event loop.

    On a core shared by the loop, the decode pool and the inference thread, the kernel would give the loop a
    third of it while the workers are busy: the crowd's refusals, the probes and /metrics would queue behind
    decoding. Niced by WORKER_NICE, the workers still get all the CPU the loop does not use (the loop needs
    little: a refusal costs a fraction of a millisecond), so goodput stays; the door answers first. Linux
    applies the nice value per thread; elsewhere, or where it is not allowed, this does nothing."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
