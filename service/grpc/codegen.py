"""catdog's gRPC modules, generated: `python -m service.grpc.codegen` (needs grpcio-tools, in the dev extra).
tests/service/grpc/test_codegen.py checks the committed files match.

The service is Triton's `inference.GRPCInferenceService` (grpc_service.proto + model_config.proto, BSD-3), a
superset of KServe's grpc_predict_v2.proto: same package, same service, the same six calls on the wire. Triton's
client wheel ships those protos only as compiled descriptors, so two steps:
- `python -m service.grpc.codegen --protos` renders inference.proto and model_config.proto from the descriptors
  in the installed `tritonclient` (service/grpc/protoprint.py); run it when moving to a newer Triton release;
- `python -m service.grpc.codegen` runs protoc on those .proto files, with two mechanical edits to its output:
  the messages live in a private descriptor pool (service/grpc/pool.py), not protobuf's default one, because
  tritonclient and KServe's SDK register the same names (`inference.ModelInferRequest`...) there and a process
  that imports either beside the service (tests, a notebook) would otherwise fail with "duplicate symbol"; and
  the modules import each other from this package instead of as top-level modules.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = {"inference.proto": "grpc_service.proto", "model_config.proto": "model_config.proto"}  # ours: Triton's
PROTO = HERE / "inference.proto"
OUTPUTS = (
    "inference_pb2.py",
    "inference_pb2.pyi",
    "inference_pb2_grpc.py",
    "model_config_pb2.py",
    "model_config_pb2.pyi",
)
HEADER = (
    "# Generated from service/grpc/inference.proto and model_config.proto (Triton's gRPC protocol, BSD-3, NVIDIA)\n"
    "# by `python -m service.grpc.codegen`. Do not edit.\n"
)
LICENSE = """\
// Triton Inference Server's gRPC protocol ({triton}, from tritonclient {version}'s compiled descriptors),
// rendered by `python -m service.grpc.codegen --protos`. Do not edit: regenerate.
// Package, services, messages and field numbers are the protocol: they must not change. Comments of the original
// are not in its descriptors; read them in triton-inference-server/common, protobuf/{triton}.
//
// Copyright 2019-2025, NVIDIA CORPORATION & AFFILIATES. All rights reserved.
//
// Redistribution and use in source and binary forms, with or without
// modification, are permitted provided that the following conditions
// are met:
//  * Redistributions of source code must retain the above copyright
//    notice, this list of conditions and the following disclaimer.
//  * Redistributions in binary form must reproduce the above copyright
//    notice, this list of conditions and the following disclaimer in the
//    documentation and/or other materials provided with the distribution.
//  * Neither the name of NVIDIA CORPORATION nor the names of its
//    contributors may be used to endorse or promote products derived
//    from this software without specific prior written permission.
//
// THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS ``AS IS'' AND ANY
// EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
// IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
// PURPOSE ARE DISCLAIMED.  IN NO EVENT SHALL THE COPYRIGHT OWNER OR
// CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
// EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
// PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR
// PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY
// OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
// (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
// OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def render_protos() -> dict[str, str]:
    """inference.proto and model_config.proto from the installed tritonclient's descriptors: file name -> text."""
    from importlib.metadata import version

    from google.protobuf import descriptor_pb2
    from tritonclient.grpc import model_config_pb2, service_pb2  # type: ignore[import-untyped]

    from service.grpc.protoprint import proto_text

    texts = {}
    for ours, module in (("inference.proto", service_pb2), ("model_config.proto", model_config_pb2)):
        file = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        triton = file.name
        assert PROTOS[ours] == triton, f"tritonclient's {triton}: review codegen.py"
        file.name = ours
        header = LICENSE.format(triton=triton, version=version("tritonclient"))
        texts[ours] = proto_text(file, header)
    return texts


def generate() -> dict[str, str]:
    """protoc's output for the .proto files, edited as the module docstring says: file name -> text."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory() as out:
        args = ["protoc", f"-I{HERE}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
        if protoc.main([*args, *(str(HERE / name) for name in PROTOS)]) != 0:
            raise RuntimeError("protoc failed")
        texts = {name: (Path(out) / name).read_text() for name in OUTPUTS}
    default_pool = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
    for module in ("inference_pb2", "model_config_pb2"):
        pb2 = texts[f"{module}.py"]
        assert default_pool in pb2, "protoc's output changed: review codegen.py"
        pb2 = pb2.replace(
            default_pool,
            "from service.grpc.pool import POOL  # private: see service/grpc/codegen.py\n"
            "DESCRIPTOR = POOL.AddSerializedFile(",
        )
        pb2 = pb2.replace(f"'{module}', _globals", f"'service.grpc.{module}', _globals")
        texts[f"{module}.py"] = pb2
    for name, local in (
        ("inference_pb2.py", "import model_config_pb2 as model__config__pb2"),
        ("inference_pb2.pyi", "import model_config_pb2 as _model_config_pb2"),
        ("inference_pb2_grpc.py", "import inference_pb2 as inference__pb2"),
    ):
        assert local in texts[name], f"protoc's output changed ({name}): review codegen.py"
        texts[name] = texts[name].replace(local, f"from service.grpc {local}")
    return {name: HEADER + text for name, text in texts.items()}


def main(argv: list[str]) -> int:
    texts = render_protos() if argv == ["--protos"] else generate()
    for name, text in texts.items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
