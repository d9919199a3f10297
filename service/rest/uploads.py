"""Read the images of a request: multipart field `file` (repeatable) or a raw `image/*` body.

The body is streamed into memory with the byte limit checked as it arrives (and against Content-Length
before reading), and multipart is parsed from memory: uploads never touch the disk, unlike Starlette's
form parser, which spools large files to a temporary file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.dataplane.inference import Upload
from service.errors import MalformedRequest, MissingFile, PayloadTooLarge, UnsupportedMediaType

FILE_FIELDS = (b"file", b"files")
RAW_TYPES = ("application/octet-stream",)


async def read_uploads(request: Request, *, max_bytes: int) -> list[Upload]:
    """The request's images as sent (their count and emptiness are the DataPlane's limits to check)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "multipart/form-data" and not _is_raw(media_type):
        raise UnsupportedMediaType(
            f"send the image as multipart/form-data field 'file' or as a raw image/* body, not {media_type}"
        )
    body = await read_body(request, max_bytes)
    if media_type == "multipart/form-data":
        uploads = parse_multipart(body, request.headers["content-type"])
        if not uploads:
            raise MissingFile("the multipart body has no 'file' field")
    elif not body:
        raise MissingFile("no image: send multipart/form-data field 'file' or a raw image/* body")
    else:
        uploads = [Upload(body)]
    return uploads


def _is_raw(media_type: str) -> bool:
    return media_type.startswith("image/") or media_type in RAW_TYPES


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise MalformedRequest("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)


def parse_multipart(body: bytes, content_type: str) -> list[Upload]:
    """The file parts named `file` (or `files`), in order; other fields are ignored."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedRequest("multipart/form-data without a boundary parameter")
    parts: list[_Part] = []
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    ended: list[bool] = []

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        parts[-1].headers[b"".join(header_field).lower()] = b"".join(header_value)
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    def on_end() -> None:
        ended.append(True)

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedRequest(f"malformed multipart body: {str(exc)[:200]}") from None
    if not ended:  # a truncated upload must not pass for a complete one
        raise MalformedRequest("malformed multipart body: it ends before the closing boundary")
    uploads = []
    for part in parts:
        disposition, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or options.get(b"name") not in FILE_FIELDS:
            continue
        raw_name = options.get(b"filename")
        filename = raw_name.decode("utf-8", errors="replace")[:255] if raw_name is not None else None
        uploads.append(Upload(b"".join(part.chunks), filename))
    return uploads
