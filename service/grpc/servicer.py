"""`inference.GRPCInferenceService` over the DataPlane (and service/oip/protocol.py for the protocol's terms).
Tensors arrive in `raw_input_contents` (one entry per input, in order) or in each input's typed `contents`;
outputs always leave in `raw_output_contents` (tritonclient reads FP32 outputs only from there). Errors leave by
service/grpc/errors.py; each call writes the same access line as an HTTP request (service/access.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import json_format

from service.access import log_access, request_id
from service.dataplane.dataplane import DataPlane
from service.errors import CatdogError, MalformedRequest, NotServed
from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from service.grpc.access import current_key
from service.grpc.errors import abort, grpc_code
from service.models.admin import RepositoryApi
from service.observation import Observation
from service.oip.protocol import OpenInference
from service.oip.tensors import BYTES, FP32, InferInput, InferRequest, RequestedOutput, check_shape, decode_raw
from service.tracing import context as tracing

PROTOCOL = "oip_grpc"
SERVICE = "/inference.GRPCInferenceService/"

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane
        self.oip = OpenInference(data_plane)
        self.observer = data_plane.observer  # tracing / payload logging; None when both are off
        self.repository_api = RepositoryApi(data_plane.repository)

    async def _call(
        self,
        method: str,
        context: Context,
        handler: Callable[[dict[str, Any]], Awaitable[T]],
        *,
        offered_id: str = "",
        model: str | None = None,
    ) -> T:
        """Run one RPC: request id, access line, server span (not for ModelReady, a probe), and the error taxonomy
        -> gRPC status."""
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        # The client's x-request-id metadata, else the request's OIP `id`, when sane; else a new one.
        rid = request_id(metadata.get("x-request-id"), offered_id)
        await context.send_initial_metadata((("x-request-id", rid),))
        fields: dict[str, Any] = {"model": model} if model else {}
        if key := current_key.get():  # the API key's name (service/grpc/access.py), never the key
            fields["key"] = key
        status = grpc.StatusCode.OK
        observation = self._observe(method, context, rid, fields)
        fault = False
        try:
            return await handler(fields)
        except CatdogError as exc:
            status = grpc_code(exc)
            fault = exc.status >= 500
            fields["error"] = exc.code
            await abort(context, self.data_plane, model, exc)
        except Exception as exc:
            status, fault = grpc.StatusCode.UNKNOWN, True
            if observation is not None:
                observation.fail(exc)
            raise
        finally:
            if observation is not None:
                done: dict[str, str | int] = {"rpc.grpc.status_code": status.value[0]}
                if model:
                    done["catdog.model"] = model
                observation.finish(done, fields.get("error"), fault=fault)
            seconds = time.perf_counter() - started
            log_access(rid, "GRPC", SERVICE + method, status.name, seconds, _peer(context), fields)

    def _observe(self, method: str, context: Context, request_id: str, fields: dict[str, Any]) -> Observation | None:
        if self.observer is None or method == "ModelReady":
            return None
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": SERVICE.strip("/"),
            "rpc.method": method,
            "catdog.request_id": request_id,
        }
        metadata = context.invocation_metadata() or ()
        observation = self.observer.start(SERVICE.lstrip("/") + method, metadata, attributes, request_id)
        fields.update(observation.log_fields)
        return observation

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.data_plane.ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return pb.ServerMetadataResponse(**self.oip.server_metadata())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            version = self.oip.version(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=self.data_plane.model_ready(request.name, version))

        return await self._call("ModelReady", context, handle, model=request.name)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            meta = self.oip.model_metadata(request.name, request.version or None)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[tensor(**t) for t in meta["inputs"]],
                outputs=[tensor(**t) for t in meta["outputs"]],
            )

        return await self._call("ModelMetadata", context, handle, model=request.name)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            """Parse, admit, read, classify, encode (the body is already read: grpc parsed the message)."""
            data_plane = self.data_plane
            version = self.oip.version(request.model_name, request.model_version or None)
            model = data_plane.model_for_work(request.model_name, version)
            # Admitted with the client's gRPC deadline as the request's (capped by request_timeout_s).
            timeout = context.time_remaining()
            span = data_plane.span(model, PROTOCOL, timeout_s=timeout, body_bytes=request.ByteSize())
            async with span as permit:
                infer_request = parse_model_infer(request)
                answer = await self.oip.infer(model, infer_request, permit, fields.update)
            if request.id:
                fields["oip_id"] = request.id
            with tracing.stage("catdog.encode"):
                response = pb.ModelInferResponse(
                    model_name=answer.model_name, model_version=answer.model_version, id=answer.id or ""
                )
                for tensor in answer.outputs:
                    response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                    response.raw_output_contents.append(tensor.raw())
            return response

        return await self._call("ModelInfer", context, handle, offered_id=request.id, model=request.model_name)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            config = self.oip.model_config(request.name, request.version or None)
            return json_format.ParseDict({"config": config}, pb.ModelConfigResponse())

        return await self._call("ModelConfig", context, handle, model=request.name)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            statistics = self.oip.statistics(request.name or None, request.version or None)
            return json_format.ParseDict(statistics, pb.ModelStatisticsResponse())

        return await self._call("ModelStatistics", context, handle, model=request.name or None)

    # Triton's model repository extension (service/models/admin.py); the door requires the `admin` scope.
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            index = pb.RepositoryIndexResponse.ModelIndex
            items = self.repository_api.index(ready_only=request.ready)
            return pb.RepositoryIndexResponse(models=[index(**asdict(item)) for item in items])

        return await self._call("RepositoryIndex", context, handle)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            if request.parameters:
                raise MalformedRequest(
                    "load parameters (config overrides, files) are not accepted; change the repository"
                )
            await self.repository_api.load(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._call("RepositoryModelLoad", context, handle, model=request.model_name)

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            await self.repository_api.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._call("RepositoryModelUnload", context, handle, model=request.model_name)


def _unimplemented(method: str) -> Callable[..., Awaitable[Any]]:
    """Triton's calls catdog does not serve: UNIMPLEMENTED with a message that says so (not grpc's generic
    "Method not implemented!"), and an access line like every call."""

    async def refuse(self: InferenceServicer, request: Any, context: Context) -> Any:
        async def handle(fields: dict[str, Any]) -> Any:
            raise NotServed(f"catdog does not serve {SERVICE}{method}: {UNSERVED[method]}")

        return await self._call(method, context, handle)

    refuse.__name__ = method
    return refuse


# Every call of Triton's service beyond the ones above, and why catdog leaves it out.
UNSERVED = {
    "ModelStreamInfer": "streaming inference is not served; call ModelInfer",
    "SystemSharedMemoryStatus": "shared-memory tensors are not supported; send tensors in the request",
    "SystemSharedMemoryRegister": "shared-memory tensors are not supported; send tensors in the request",
    "SystemSharedMemoryUnregister": "shared-memory tensors are not supported; send tensors in the request",
    "CudaSharedMemoryStatus": "CUDA shared memory is not supported",
    "CudaSharedMemoryRegister": "CUDA shared memory is not supported",
    "CudaSharedMemoryUnregister": "CUDA shared memory is not supported",
    "TraceSetting": "tracing is configured by settings, not per call",
    "LogSettings": "logging is configured by settings (CATDOG_LOG_LEVEL), not per call",
}
for _method in UNSERVED:
    setattr(InferenceServicer, _method, _unimplemented(_method))


def parse_model_infer(request: Any) -> InferRequest:
    """A ModelInferRequest -> InferRequest. Raw contents, when present, hold every input's data in input order."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise MalformedRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} input(s)")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        shape = check_shape(tensor.name, list(tensor.shape))
        data: list[bytes] | np.ndarray
        if raw:
            data = decode_raw(tensor.name, tensor.datatype, shape, raw[i])
        elif tensor.datatype == BYTES:
            data = list(tensor.contents.bytes_contents)
            if len(data) != int(np.prod(shape)):
                raise MalformedRequest(f"input {tensor.name!r}: shape {shape} but {len(data)} bytes_contents")
        elif tensor.datatype == FP32:
            data = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
            if data.size != int(np.prod(shape)):
                raise MalformedRequest(f"input {tensor.name!r}: shape {shape} but {data.size} fp32_contents")
        else:
            raise MalformedRequest(f"input {tensor.name!r}: datatype {tensor.datatype!r} is not served (BYTES or FP32)")
        inputs.append(InferInput(tensor.name, tensor.datatype, shape, data))
    outputs = [RequestedOutput(o.name, None, _parameters(o.parameters)) for o in request.outputs] or None
    return InferRequest(request.model_name, request.model_version or None, request.id or None, inputs, outputs)


def _parameters(parameters: Any) -> dict[str, Any]:
    """A map of InferParameter -> plain values (the one of its choices that is set)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def _peer(context: Context) -> str:
    """The client's address without the transport prefix and port ("ipv4:127.0.0.1:5555" -> "127.0.0.1")."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def add_to_server(data_plane: DataPlane, server: grpc.aio.Server) -> None:
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(data_plane), server)  # type: ignore[no-untyped-call]
