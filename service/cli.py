"""`catdog serve | predict | models | convert | keys new | probe`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.errors import CatdogError, StartupError
from service.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="catdog", description="Serve and try the cat/dog ONNX models.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (settings: CATDOG_* env vars)")
    serve.add_argument("--host", help="overrides CATDOG_HOST")
    serve.add_argument("--port", type=int, help="overrides CATDOG_PORT")
    serve.add_argument("--grpc-port", type=int, help="overrides CATDOG_GRPC_PORT (the Open Inference Protocol)")
    serve.add_argument("--workers", type=int, help="overrides CATDOG_WORKERS")
    serve.add_argument("--model-dir", type=Path, help="overrides CATDOG_MODEL_DIR")

    predict = sub.add_parser("predict", help="classify image files locally, without a server")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--model", default="pretrained")
    predict.add_argument("--model-dir", type=Path)
    predict.add_argument("--json", action="store_true", help="one JSON object per image")

    models = sub.add_parser("models", help="list the model repository")
    models.add_argument("--model-dir", type=Path)
    models.add_argument("--json", action="store_true")

    sub.add_parser("convert", help="PyTorch -> ONNX pipeline (needs the `convert` extra)", add_help=False)

    keys = sub.add_parser("keys", help="API keys (docs/operations.md, Access control and TLS)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a new random key and its entry for CATDOG_API_KEYS_FILE")
    new.add_argument("--name", required=True, help="shown in access lines instead of the key")
    new.add_argument("--scope", action="append", choices=["infer", "admin", "metrics"], required=True)

    probe = sub.add_parser("probe", help="GET a path of this pod's own HTTP port (exit 0 on 200): exec probes")
    probe.add_argument("path", nargs="?", default="/readyz")
    probe.add_argument("--timeout", type=float, default=2.0)

    args, rest = parser.parse_known_args(argv)
    if args.command == "convert":
        return _convert(rest)
    if args.command == "keys":
        return _new_key(args.name, args.scope)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    flags = ("host", "port", "grpc_port", "workers", "model_dir")
    overrides = {k: v for k, v in vars(args).items() if k in flags and v}
    # Flags become env vars so uvicorn's worker processes (which build the app themselves) see them too.
    for key, value in overrides.items():
        os.environ[f"CATDOG_{key.upper()}"] = str(value)
    settings = Settings()
    if args.command == "serve":
        return _serve(settings)
    if args.command == "probe":
        return _probe(settings, args.path, args.timeout)
    if args.command == "predict":
        return asyncio.run(_predict(settings, args.model, args.images, as_json=args.json))
    return _models(settings, as_json=args.json)


def _serve(settings: Settings) -> int:
    import uvicorn

    from service.dataplane.runtime import resolve_providers
    from service.observability import configure_logging
    from service.security.tls import RotatingContext, tls_files

    configure_logging(settings.log_level, settings.log_format)
    try:
        resolve_providers(settings.providers)
    except StartupError as exc:
        print(f"catdog: {exc}", file=sys.stderr)
        return 3
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(settings.drain_timeout_s),
        "http": _http_protocol(),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    tls = tls_files(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    if tls is not None:  # the certificate is re-read when its files change (service/security/tls.py)
        options["ssl_context_factory"] = RotatingContext(tls, settings.tls_reload_s)
    if settings.workers > 1:
        # uvicorn's supervisor builds plain Servers in the workers: no drain delay, only its graceful timeout.
        uvicorn.run("service.app:create_app", **options)
        return 0
    # One process (the default, and what the chart runs): SIGTERM drains first (service/server.py).
    from service.server import DrainingServer

    server = DrainingServer(
        uvicorn.Config("service.app:create_app", **options),
        drain_delay_s=settings.drain_delay_s,
        drain_timeout_s=settings.drain_timeout_s,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3


def _new_key(name: str, scopes: list[str]) -> int:
    """The key goes to the client (shown once, never stored by the service); the entry goes into the keys file."""
    from service.security.keys import KeysFileError, Scope, new_key

    try:
        key, entry = new_key(name, [Scope(s) for s in dict.fromkeys(scopes)])
    except KeysFileError as exc:
        print(f"catdog: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"key": key, "entry": entry}))
    return 0


def _probe(settings: Settings, path: str, timeout: float) -> int:
    """What the kubelet's httpGet probe does, for where it cannot: over TLS the certificate is not checked (the
    peer is this pod, on loopback); with mutual TLS the pod's own certificate is presented as the client's (the
    chart issues it for client auth too, from the CA the server trusts for clients)."""
    import http.client
    import ssl

    connection: http.client.HTTPConnection
    if settings.tls_cert_file is None:
        connection = http.client.HTTPConnection("127.0.0.1", settings.port, timeout=timeout)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if settings.tls_client_ca_file is not None and settings.tls_key_file is not None:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        connection = http.client.HTTPSConnection("127.0.0.1", settings.port, timeout=timeout, context=context)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"catdog probe {path}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"catdog probe {path}: {status}", file=sys.stderr)
    return 0 if status == 200 else 1


def _http_protocol() -> Any:
    """httptools with the request head bounded (service/rest/head_limit.py); h11, which bounds it itself, without it.
    Both read the bound from uvicorn's `h11_max_incomplete_event_size`."""
    try:
        from service.rest.head_limit import BoundedHttpToolsProtocol
    except ImportError:
        return "h11"
    return BoundedHttpToolsProtocol


async def _predict(settings: Settings, model_name: str, images: list[Path], *, as_json: bool) -> int:
    """The service's own path (the DataPlane: repository, limits, batcher, imaging, postprocess) without HTTP."""
    from service.dataplane.dataplane import DataPlane
    from service.dataplane.inference import Upload
    from service.observability import configure_logging

    configure_logging("warning", "console")
    data_plane = DataPlane.from_settings(settings)
    data_plane.repository.discover(only=model_name)
    failures = 0
    try:
        await data_plane.load()
        model = data_plane.model_for_work(model_name)
        for path in images:
            try:
                [prediction] = await data_plane.classify(model, [Upload(path.read_bytes(), path.name)])
            except (CatdogError, OSError) as exc:
                failures += 1
                print(f"{path}: error: {exc}", file=sys.stderr)
                continue
            answer = prediction.answer
            if as_json:
                print(
                    json.dumps(
                        {
                            "file": str(path),
                            "model": model_name,
                            "label": answer.label,
                            "confidence": answer.confidence,
                            "probabilities": answer.probabilities,
                        }
                    )
                )
            else:
                probs = "  ".join(f"{k}={v:.3f}" for k, v in answer.probabilities.items())
                print(f"{path}: {answer.label} ({answer.confidence:.3f})  {probs}")
    except CatdogError as exc:
        print(f"catdog: {exc}", file=sys.stderr)
        return 2
    finally:
        await data_plane.close()
    return 1 if failures else 0


def _models(settings: Settings, *, as_json: bool) -> int:
    """The repository as the service finds it (the same source and scan: every version of every model), each
    card read without loading the model."""
    from service.dataplane.card import ModelCard
    from service.models.layout import scan
    from service.models.sources import open_source
    from service.models.store import cache_dir

    root = settings.model_location
    source = open_source(root, cache_dir(settings), max_bytes=settings.model_max_bytes, timeout_s=30.0)
    rows: list[dict[str, Any]] = []
    for name, layout in scan(source.sync().root).items():
        for folder in layout.versions.values():
            try:
                card = ModelCard.load(folder.folder / "model.json")
            except (OSError, ValueError) as exc:
                rows.append({"name": name, "error": str(exc).splitlines()[0]})
                continue
            rows.append(
                {
                    "name": name,
                    "version": card.version,
                    "labels": card.labels,
                    "input": f"{card.input.width}x{card.input.height}",
                    "description": card.description,
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no models in {root}")
    for row in [] if as_json else rows:
        detail = (
            row.get("error") or f"v{row['version']}  {row['input']}  {','.join(row['labels'])}  {row['description']}"
        )
        print(f"{row['name']:<14} {detail}")
    return 0


def _convert(argv: list[str]) -> int:
    import importlib

    try:
        convert_main = importlib.import_module("conversion.cli").main
    except ImportError as exc:
        print(f"catdog convert needs the convert extra (pip install 'catdog[convert]'): {exc}", file=sys.stderr)
        return 2
    return int(convert_main(argv))
