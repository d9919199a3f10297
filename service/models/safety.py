"""Nothing from a repository may reach outside its folder: object keys and archive members become paths inside
the cache only, and an ONNX graph may read external data only from its own version folder. Nothing from a
repository is ever executed (ONNX graphs are data; no custom-op libraries are registered)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A name that would land outside the folder it belongs in."""


def safe_relative(name: str) -> PurePosixPath:
    """An object key or archive member name -> a relative path with no `..`, no absolute start, no backslash or
    drive letter, no empty or NUL parts."""
    if not name or "\0" in name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"unsafe name {name[:200]!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafePath(f"unsafe name {name[:200]!r}")
    return PurePosixPath(*parts)


def inside(root: Path, relative: PurePosixPath | str) -> Path:
    """`root / relative`, refused unless it resolves inside `root` (links followed)."""
    base = root.resolve()
    target = (base / str(relative)).resolve()
    if target != base and base not in target.parents:
        raise UnsafePath(f"{str(relative)[:200]!r} resolves outside {root}")
    return target


def check_external_data(onnx_path: Path, folder: Path) -> None:
    """Refuse a graph whose tensors name external-data files outside `folder` (or that are missing): ONNX Runtime
    would otherwise open whatever path the graph names. Reads the graph's structure, not its external data."""
    import onnx  # the protobuf schema; imported here: only loading needs it
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    model = onnx.load(str(onnx_path), load_external_data=False)
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        try:
            path = inside(folder, safe_relative(location))
        except UnsafePath:
            raise UnsafePath(f"tensor {tensor.name!r} names external data outside its folder: {location!r}") from None
        if not path.is_file():
            raise UnsafePath(f"tensor {tensor.name!r} names external data that is missing: {location!r}")
