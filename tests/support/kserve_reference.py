"""KServe's reference files (../shared/kserve: the published .proto, the REST OpenAPI, the InferenceService CRD) and
what stands in for them where a checkout has no such folder beside it, so the checks run everywhere, CI included:

- the .proto: the descriptor that KServe's own SDK (`kserve`, a dev dependency) was generated from;
- the REST paths: the protocol's required endpoints as the specification lists them;
- the CRD: the typed models of KServe's SDK (`kserve.V1beta1*`, generated from the same OpenAPI as the CRD, with
  Kubernetes' own `V1*` models for the pod fields), walked for unknown fields and wrong scalar types.

The files themselves stay outside the project (their README asks that they not be copied in)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.server import REPO_ROOT

FOLDER = Path(os.environ.get("CATDOG_KSERVE_REFERENCE", REPO_ROOT.parent / "shared" / "kserve"))

# The paths and methods of the protocol's REST OpenAPI (rest_predict_v2.yaml at KServe aaac4e294dae), as it lists them.
REST_PATHS: dict[str, tuple[str, ...]] = {
    "/v2/health/live": ("get",),
    "/v2/health/ready": ("get",),
    "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}/ready": ("get",),
    "/v2/": ("get",),
    "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}": ("get",),
    "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}/infer": ("post",),
}


def reference(name: str) -> Path | None:
    path = FOLDER / name
    return path if path.is_file() else None


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "datetime": (str,),
    "date": (str,),
}


def sdk_problems(doc: Any) -> list[str]:
    """Unknown fields and wrong scalar types in an InferenceService against KServe's SDK models (empty: none found).
    In a subprocess: the SDK registers `inference.*` protobuf names that clash with tritonclient's in one process."""
    code = (
        "import json, sys\n"
        "from tests.support.kserve_reference import walk\n"
        "print(json.dumps(walk(json.load(sys.stdin), 'V1beta1InferenceService', '')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(doc), capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    problems: list[str] = json.loads(run.stdout)
    return problems


def walk(doc: Any, type_name: str, where: str) -> list[str]:
    import kserve
    import kubernetes.client

    if type_name in _SCALARS:
        wanted = _SCALARS[type_name]
        wrong = not isinstance(doc, wanted) or (type_name in ("int", "float") and isinstance(doc, bool))
        return [f"{where}: {type(doc).__name__} where {type_name} is expected"] if wrong else []
    if match := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        if not isinstance(doc, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(doc) for p in walk(item, match.group(1), f"{where}[{i}]")]
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(doc, dict):
            return [f"{where}: expected a mapping"]
        inner = match.group(1) or match.group(2)
        return [p for key, value in doc.items() for p in walk(value, inner, f"{where}.{key}")]
    model = getattr(kserve, type_name, None) or getattr(kubernetes.client, type_name, None)
    if model is None:
        return [f"{where}: the SDK has no model {type_name}"]
    if not isinstance(doc, dict):
        return [f"{where}: expected an object ({type_name})"]
    attribute = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, value in doc.items():
        if key not in attribute:
            problems.append(f"{where}.{key}")
        elif value is not None:
            problems += walk(value, model.openapi_types[attribute[key]], f"{where}.{key}")
    return problems
