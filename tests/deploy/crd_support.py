"""Validate custom resources offline against their CustomResourceDefinition's own OpenAPI schema, as the API server
does: types, enums, patterns and required fields through jsonschema, and unknown fields refused (strict field
validation) by walking the schema, since structural schemas leave additionalProperties open."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

KEDA_CRDS = Path(__file__).resolve().parent / "crds" / "keda"


def unknown_fields(doc: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare (the API server drops or, strictly, refuses them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(doc, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        found = []
        for key, value in doc.items():
            if properties is not None and key in properties:
                found += unknown_fields(value, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{where}.{key}")
            elif properties is not None and key not in ("apiVersion", "kind", "metadata"):
                found.append(f"{where}.{key}")
        return found
    if isinstance(doc, list) and isinstance(schema.get("items"), dict):
        return [f for i, item in enumerate(doc) for f in unknown_fields(item, schema["items"], f"{where}[{i}]")]
    return []


@cache
def crd_schemas(folder: Path = KEDA_CRDS) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema for every served version of every CRD in `folder`."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


def crd_validate(doc: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Raise when `doc` does not satisfy its CRD's schema or carries fields the schema does not declare."""
    schema = schemas.get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no CRD schema for {doc['apiVersion']} {doc['kind']}"
    jsonschema.Draft7Validator(schema).validate(doc)
    unknown = unknown_fields(doc, schema)
    assert not unknown, f"{doc['kind']} {doc['metadata']['name']}: unknown fields {unknown}"
