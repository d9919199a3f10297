"""The committed gRPC modules are exactly what `python -m service.grpc.codegen` makes from inference.proto and
model_config.proto; those are wire-identical to Triton's (the descriptors tritonclient ships) and a superset of the
protocol's published .proto (../shared/kserve/grpc_predict_v2.proto, KServe's SDK): every KServe message and
method is there with the same package, names, numbers, types and labels."""

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


def test_protos_are_rendered_from_tritonclient() -> None:
    """`--protos` run on the installed tritonclient gives the committed .proto files (skipped on a newer release,
    whose wire shape test_proto_is_tritons_protocol still checks)."""
    for name, text in codegen.render_protos().items():
        committed = (codegen.HERE / name).read_text()
        if committed.split("\n", 1)[0] != text.split("\n", 1)[0]:
            continue  # another tritonclient release: its wire shape is compared below
        assert committed == text, f"{name} is stale: run `python -m service.grpc.codegen --protos`"


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
    [file] = [f for f in files.file if f.name == proto.name]
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


def _sdk_descriptor(module: str) -> descriptor_pb2.FileDescriptorProto:
    """The descriptor a client SDK was generated from (in a subprocess: KServe's names clash with tritonclient's)."""
    code = f"import sys\nimport {module} as k\nsys.stdout.buffer.write(k.DESCRIPTOR.serialized_pb)\n"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=REPO_ROOT).stdout
    return descriptor_pb2.FileDescriptorProto.FromString(out)


def _assert_superset(ours: dict[str, object], theirs: dict[str, object], *, skip: str = "") -> None:
    """Every message, field and method of `theirs` is in `ours`, identical on the wire (Triton adds fields, e.g.
    InferParameter's double_param and uint64_param; `skip`: a name prefix left out)."""
    assert ours["package"] == theirs["package"] == "inference"
    assert ours["syntax"] == theirs["syntax"]
    ours_m, theirs_m = ours["messages"], theirs["messages"]
    assert isinstance(ours_m, dict) and isinstance(theirs_m, dict)
    for name, fields in theirs_m.items():
        if skip and name.startswith(f".inference.{skip}"):
            continue
        assert isinstance(fields, list)
        assert set(fields) <= set(ours_m.get(name, [])), name
    ours_s, theirs_s = ours["services"], theirs["services"]
    assert isinstance(ours_s, dict) and isinstance(theirs_s, dict)
    assert ours_s.keys() == theirs_s.keys() == {"GRPCInferenceService"}
    mine = set(ours_s["GRPCInferenceService"])
    for method in theirs_s["GRPCInferenceService"]:
        assert (skip and method[0].startswith(skip)) or method in mine, method


def test_proto_is_tritons_protocol() -> None:
    """inference.proto + model_config.proto are Triton's grpc_service.proto + model_config.proto on the wire."""
    assert _shape(_descriptor(codegen.PROTO)) == _shape(_sdk_descriptor("tritonclient.grpc.service_pb2"))
    config = codegen.HERE / "model_config.proto"
    assert _shape(_descriptor(config)) == _shape(_sdk_descriptor("tritonclient.grpc.model_config_pb2"))


def test_proto_is_a_superset_of_the_published_protocol() -> None:
    """Against KServe's SDK always, and against the published .proto where ../shared/kserve is beside us."""
    ours = _shape(_descriptor(codegen.PROTO))
    # KServe's SDK: the published service plus its own model-repository extension (Triton's differs: left out).
    _assert_superset(ours, _shape(_sdk_descriptor("kserve.protocol.grpc.grpc_predict_v2_pb2")), skip="RepositoryModel")
    if PUBLISHED is not None:
        _assert_superset(ours, _shape(_descriptor(PUBLISHED)))


def test_modules_live_in_a_private_pool() -> None:
    """tritonclient and KServe's SDK register `inference.*` in protobuf's default pool: ours must not clash."""
    code = (
        "import tritonclient.grpc.service_pb2 as t\n"
        "from service.grpc import inference_pb2 as p\n"
        "r = p.ModelInferRequest(model_name='m', raw_input_contents=[b'x'])\n"
        "assert t.ModelInferRequest.FromString(r.SerializeToString()).model_name == 'm'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
