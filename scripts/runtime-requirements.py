#!/usr/bin/env python3
"""Print the service's runtime requirements (pyproject's [project].dependencies), one per line.

    python3 scripts/runtime-requirements.py [--variant cpu|gpu] [pyproject.toml]

The Dockerfile's builder stage installs exactly these before it copies any source, so the dependency layer
is rebuilt only when pyproject.toml changes. `--variant gpu` swaps `onnxruntime` for `onnxruntime-gpu`
(same version constraint): the CUDA build of the same runtime. Standard library only (tomllib, Python 3.11+).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$")


def runtime_requirements(pyproject: Path, variant: str = "cpu") -> list[str]:
    with pyproject.open("rb") as f:
        deps: list[str] = list(tomllib.load(f)["project"]["dependencies"])
    if variant == "cpu":
        return deps
    out = []
    for dep in deps:
        match = _NAME.match(dep)
        if match and match.group(1).lower().replace("_", "-") == "onnxruntime":
            dep = f"onnxruntime-gpu{match.group(2)}"
        out.append(dep)
    if not any(d.startswith("onnxruntime-gpu") for d in out):
        raise SystemExit("no onnxruntime dependency to swap for onnxruntime-gpu")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{dep}\n" for dep in runtime_requirements(args.pyproject, args.variant)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
