"""Validate Argo manifests offline, as the Argo Server and the Kubernetes API server would: against Argo's
JSON schema (with unknown fields refused: the server decodes strictly) and against the WorkflowTemplate or
CronWorkflow CRD's structural schema (types, enums, required fields, unknown fields, int-or-string). All are
vendored data of Argo v4.1.2 (tests/argo_release/SOURCE.md), so the check runs in any clone.

The JSON schema types IntOrString and Quantity as strings, while Go accepts integers too: both are allowed.
Not checked here: CEL rules of the CRD, expression semantics (test_workflows checks the DAG's references).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import yaml

DATA = Path(__file__).parent / "argo_release"
INT_OR_STRING = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity"}


def _close(schema):
    """Refuse unknown fields wherever the schema declares properties."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close(value)
    elif isinstance(schema, list):
        for value in schema:
            _close(value)
    return schema


@cache
def _json_schema() -> dict:
    schema = json.loads((DATA / "schema.json").read_text())
    definitions = _close(schema["definitions"])
    for name in INT_OR_STRING:
        definitions[name] = {"type": ["string", "integer", "number"]}
    return {"definitions": definitions}


CRDS = {"WorkflowTemplate": "argoproj.io_workflowtemplates.yaml", "CronWorkflow": "argoproj.io_cronworkflows.yaml"}


@cache
def _crd_schema(kind: str) -> dict:
    crd = yaml.safe_load((DATA / CRDS[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    return version["schema"]["openAPIV3Schema"]


def _structural(schema: dict, value, path: str) -> list[str]:
    """The API server's structural-schema checks on `value`."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if schema.get("x-kubernetes-int-or-string"):
        return [] if isinstance(value, int | str) else [f"{path}: must be an integer or a string"]
    kind = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": int | float}
    if kind in checks and (not isinstance(value, checks[kind]) or (kind == "integer" and isinstance(value, bool))):
        return [f"{path}: must be {kind}, got {type(value).__name__}"]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if kind == "object":
        properties = schema.get("properties")
        missing = [name for name in schema.get("required", []) if name not in value]
        problems += [f"{path}: missing required field {name!r}" for name in missing]
        for key, item in value.items():
            if properties is not None and key in properties:
                problems += _structural(properties[key], item, f"{path}.{key}")
            elif properties is not None and "additionalProperties" not in schema:
                problems.append(f"{path}: unknown field {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += _structural(schema["additionalProperties"], item, f"{path}.{key}")
    if kind == "array" and "items" in schema:
        for index, item in enumerate(value):
            problems += _structural(schema["items"], item, f"{path}[{index}]")
    return problems


def problems(manifest: dict) -> list[str]:
    """Every schema and CRD violation of one WorkflowTemplate or CronWorkflow, with its path."""
    kind = manifest["kind"]
    assert kind in CRDS, "only WorkflowTemplates and CronWorkflows are generated"
    schema = copy.copy(_json_schema())
    schema["$ref"] = f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}"
    validator = jsonschema.Draft7Validator(schema)
    found = [f"schema {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    return found + [f"crd {p}" for p in _structural(_crd_schema(kind), manifest, "")]


if __name__ == "__main__":  # `python -m tests.argo_schema argo/*.yaml` (make workflows)
    import sys

    found = [f"{path}: {p}" for path in sys.argv[1:] for p in problems(yaml.safe_load(Path(path).read_text()))]
    print("\n".join(found) or f"{len(sys.argv) - 1} manifest(s) valid against Argo v4.1.2's schema and CRD")
    sys.exit(1 if found else 0)
