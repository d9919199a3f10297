"""The committed gRPC modules are exactly what `python -m service.grpc.codegen` makes from inference.proto, and
inference.proto is wire-identical to the protocol's published .proto (../shared/kserve/grpc_predict_v2.proto):
same package, services, methods, messages, field names, numbers, types and labels."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from service.grpc import codegen
from tests.support.kserve_reference import reference
from tests.support.server import REPO_ROOT

PUBLISHED = reference("grpc_predict_v2.proto")


def test_generated_modules_match_the_proto() -> None:
    for name, text in codegen.generate().items():
        committed = (codegen.HERE / name).read_text()
        assert committed == text, f"{name} is stale: run `python -m service.grpc.codegen`"


def _descriptor(proto: Path) -> descriptor_pb2.FileDescriptorProto:
    with tempfile.TemporaryDirectory() as out:
        target = Path(out) / "set.pb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{proto.parent}",
                f"--descriptor_set_out={target}",
                proto.name,
            ],
            check=True,
        )
        files = descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes())
    [file] = files.file
    return file


def _shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """Everything that is on the wire, nothing that is not (file name, comments, options)."""

    def message(m: descriptor_pb2.DescriptorProto, prefix: str) -> dict[str, object]:
        full = f"{prefix}.{m.name}"
        out: dict[str, object] = {
            full: sorted((f.name, f.number, f.type, f.label, f.type_name, f.oneof_index) for f in m.field)
        }
        for nested in m.nested_type:
            out.update(message(nested, full))
        return out

    messages: dict[str, object] = {}
    for m in file.message_type:
        messages.update(message(m, f".{file.package}"))
    services = {
        s.name: sorted((r.name, r.input_type, r.output_type, r.client_streaming, r.server_streaming) for r in s.method)
        for s in file.service
    }
    return {"package": file.package, "syntax": file.syntax, "messages": messages, "services": services}


def _kserve_sdk_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The descriptor KServe's SDK was generated from (in a subprocess: its names clash with tritonclient's)."""
    code = (
        "import sys\n"
        "from kserve.protocol.grpc import grpc_predict_v2_pb2 as k\n"
        "sys.stdout.buffer.write(k.DESCRIPTOR.serialized_pb)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=REPO_ROOT).stdout
    return descriptor_pb2.FileDescriptorProto.FromString(out)


def test_proto_is_the_published_protocol() -> None:
    """Against KServe's SDK always, and against the published .proto where ../shared/kserve is beside us."""
    ours = _shape(_descriptor(codegen.PROTO))
    assert ours["package"] == "inference"
    sdk = _shape(_kserve_sdk_descriptor())  # the published service plus the model-repository extension
    sdk["messages"] = {k: v for k, v in sdk["messages"].items() if not k.startswith(".inference.RepositoryModel")}  # type: ignore[attr-defined]
    sdk["services"] = {
        name: [m for m in methods if not m[0].startswith("RepositoryModel")]
        for name, methods in sdk["services"].items()  # type: ignore[attr-defined]
    }
    assert ours == sdk
    if PUBLISHED is not None:
        assert ours == _shape(_descriptor(PUBLISHED))


def test_modules_live_in_a_private_pool() -> None:
    """tritonclient and KServe's SDK register `inference.*` in protobuf's default pool: ours must not clash."""
    code = (
        "import tritonclient.grpc.service_pb2 as t\n"
        "from service.grpc import inference_pb2 as p\n"
        "r = p.ModelInferRequest(model_name='m', raw_input_contents=[b'x'])\n"
        "assert t.ModelInferRequest.FromString(r.SerializeToString()).model_name == 'm'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
