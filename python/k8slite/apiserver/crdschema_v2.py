"""A custom resource's structural schema as upstream publishes it in OpenAPI v2.

kubectl validates the items of a `kind: List` on the client against the v2 models, and
those models cannot express what v3 can. Upstream (apiextensions' ToStructuralOpenAPIV2)
therefore publishes a reduced schema, so that kubectl accepts whatever the server accepts:
- the junctors allOf, oneOf, anyOf and not are dropped;
- a nullable value loses its type, items and properties (kubectl would refuse null), and
  is no longer required by its parent;
- a value that preserves unknown fields loses its items and properties (kubectl would
  refuse the unknown ones), and its type if that is object;
- an array left without items loses its type (kubectl cannot parse such an array).
"""

from __future__ import annotations

from typing import Any

from k8slite.component.objects import Obj

_JUNCTORS = ("allOf", "oneOf", "anyOf", "not")


def v2_schema(schema: Obj) -> Obj:
    """A copy of a structural schema reduced for OpenAPI v2."""
    out = {k: v for k, v in schema.items() if k not in _JUNCTORS}
    if out.pop("nullable", False):
        for k in ("type", "items", "properties"):
            out.pop(k, None)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("items", None)
        out.pop("properties", None)
        if out.get("type") == "object":
            del out["type"]
    if out.get("type") == "array" and "items" not in out:
        del out["type"]
    properties: dict[str, Any] = out.get("properties") or {}
    if "required" in out:
        nullable = {k for k, v in properties.items() if isinstance(v, dict) and v.get("nullable")}
        additional = out.get("additionalProperties")
        if isinstance(additional, dict) and additional.get("nullable"):
            nullable = set(out["required"])
        required = [k for k in out["required"] if k not in nullable]
        if required:
            out["required"] = required
        else:
            del out["required"]
    if properties:
        out["properties"] = {k: v2_schema(v) for k, v in properties.items()}
    if isinstance(out.get("items"), dict):
        out["items"] = v2_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = v2_schema(out["additionalProperties"])
    return out
