"""Regenerate inference_pb2.py(i) and inference_pb2_grpc.py from inference.proto: `python -m service.grpc.codegen`
(needs grpcio-tools, in the dev extra). tests/service/grpc/test_codegen.py checks the committed files match.

Two edits to protoc's output, both mechanical:
- the messages live in a private descriptor pool, not protobuf's default one: tritonclient and KServe's SDK
  register the same names (`inference.ModelInferRequest`...) in the default pool, and a process that imports
  either beside the service (tests, a notebook) would otherwise fail with "duplicate symbol";
- the stub module imports the message module from this package instead of as a top-level module.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "inference.proto"
OUTPUTS = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")
HEADER = (
    "# Generated from service/grpc/inference.proto (the Open Inference Protocol, Apache-2.0, KServe) by\n"
    "# `python -m service.grpc.codegen`. Do not edit.\n"
)


def generate() -> dict[str, str]:
    """protoc's output for inference.proto, edited as the module docstring says: file name -> text."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory() as out:
        args = ["protoc", f"-I{HERE}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
        if protoc.main([*args, str(PROTO)]) != 0:
            raise RuntimeError("protoc failed")
        texts = {name: (Path(out) / name).read_text() for name in OUTPUTS}
    pb2 = texts["inference_pb2.py"]
    default_pool = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
    assert default_pool in pb2, "protoc's output changed: review codegen.py"
    pb2 = pb2.replace(
        default_pool,
        "POOL = _descriptor_pool.DescriptorPool()  # private: see service/grpc/codegen.py\n"
        "DESCRIPTOR = POOL.AddSerializedFile(",
    )
    pb2 = pb2.replace("'inference_pb2', _globals", "'service.grpc.inference_pb2', _globals")
    stubs = texts["inference_pb2_grpc.py"]
    assert "import inference_pb2 as inference__pb2" in stubs, "protoc's output changed: review codegen.py"
    stubs = stubs.replace(
        "import inference_pb2 as inference__pb2", "from service.grpc import inference_pb2 as inference__pb2"
    )
    texts["inference_pb2.py"], texts["inference_pb2_grpc.py"] = pb2, stubs
    return {name: HEADER + text for name, text in texts.items()}


def main() -> int:
    for name, text in generate().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
