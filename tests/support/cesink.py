"""A CloudEvents sink on loopback for tests: an HTTP server that parses each POST with the `cloudevents` SDK
(binary or structured mode), keeps the events, and can be made slow or failing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloudevents.http import CloudEvent, from_http

from loadtest.ports import free_port


@dataclass
class Sink:
    port: int = field(default_factory=free_port)
    delay_s: float = 0.0
    status: int = 200
    events: list[CloudEvent] = field(default_factory=list)
    posts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def wait_for(self, predicate: Callable[[list[CloudEvent]], bool], timeout: float = 30.0) -> list[CloudEvent]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                events = list(self.events)
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"events never matched within {timeout}s; got {len(events)}")
            time.sleep(0.05)


def _handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with sink._lock:
                sink.posts += 1
            if sink.delay_s:
                time.sleep(sink.delay_s)
            if sink.status == 200:
                event = from_http(dict(self.headers.items()), body)
                with sink._lock:
                    sink.events.append(event)
            self.send_response(sink.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def running_sink(**options: Any) -> Iterator[Sink]:
    sink = Sink(**options)
    server = ThreadingHTTPServer(("127.0.0.1", sink.port), _handler(sink))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
