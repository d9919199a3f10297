"""Names from a repository stay inside their folder; ONNX external data stays inside its version folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.models.safety import UnsafePath, check_external_data, inside, safe_relative


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "C:/x", "a\\b", "a\0b", "./", "//"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relative(name)


def test_safe_names_are_normalised() -> None:
    assert str(safe_relative("m/1/model.onnx")) == "m/1/model.onnx"
    assert str(safe_relative("m//./1/model.onnx")) == "m/1/model.onnx"


def test_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        inside(root, "out/secret")
    assert inside(root, "m/model.onnx") == (root / "m" / "model.onnx").resolve()


def _graph_with_external_weights(folder: Path, location: str) -> Path:
    weights = numpy_helper.from_array(np.ones((3, 2), dtype=np.float32), "W")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", location
    weights.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weights],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_external_data_outside_the_version_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m" / "1"
    folder.mkdir(parents=True)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 24)
    for location in ("../../secret.bin", "/etc/passwd", str(tmp_path / "secret.bin")):
        path = _graph_with_external_weights(folder, location)
        with pytest.raises(UnsafePath, match="outside its folder"):
            check_external_data(path, folder)
    path = _graph_with_external_weights(folder, "weights.bin")
    with pytest.raises(UnsafePath, match="missing"):
        check_external_data(path, folder)
    (folder / "weights.bin").write_bytes(np.ones((3, 2), dtype=np.float32).tobytes())
    check_external_data(path, folder)  # inside: fine
