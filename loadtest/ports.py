"""Free loopback ports for the servers that benchmarks and tests start."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same one twice in this process.

    The kernel may give a port it just gave again once its socket is closed: a service handed that port for HTTP
    and again for gRPC fails to bind the second (CI once saw it). Remembering what was handed out rules that out.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
