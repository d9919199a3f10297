"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

httptools (llhttp) buffers a header of any size: without this, one connection can make the process hold
gigabytes of `X-Anything: aaaa...`. Here the bytes of a request's head are counted as they arrive; past
`max_head_bytes` the connection gets a 431 with the JSON error body and is closed, before the parser buffers
more. (An ingress usually limits headers first; this guards a directly exposed process.)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body

DEFAULT_MAX_HEAD_BYTES = 65536


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """The limit is uvicorn's `h11_max_incomplete_event_size` (h11's own bound on the same thing), so one setting
    covers both parsers and the class needs no state of its own (it is pickled by name for worker processes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes: int = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._heads = 0  # request heads parsed on this connection

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # what follows on this connection is the next request's head

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        allowed = self.max_head_bytes - self._head_bytes
        if len(data) <= allowed:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed what the budget allows: if the head ends inside it, the rest is body (or the next request).
        self._head_bytes += allowed
        heads = self._heads
        super().data_received(data[:allowed])
        if self.transport.is_closing():
            return
        if self._heads == heads:
            self._refuse()
        else:
            self.data_received(data[allowed:])

    def _refuse(self) -> None:
        request_id = uuid.uuid4().hex
        message = f"the request line and headers exceed {self.max_head_bytes} bytes"
        body = json.dumps(error_body("headers_too_large", message, request_id)).encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"x-request-id: " + request_id.encode() + b"\r\n"
            b"x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
        )
        self.logger.warning("request head over %d bytes refused (431)", self.max_head_bytes)
        self.transport.write(head + body)
        self.transport.close()
