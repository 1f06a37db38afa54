"""pods/ephemeralcontainers: the one way to add a debugging container to a running pod.

As upstream's podEphemeralContainersStrategy: a write of the subresource changes
spec.ephemeralContainers and nothing else; containers may only be added (an existing one
may be neither removed nor changed); each is validated as a container without the fields
an ephemeral one cannot have (ports, probes, resources, lifecycle, restart policy,
subPath mounts), with a name unique among all the pod's containers and a
targetContainerName naming one of them.
"""

from __future__ import annotations

import json
from typing import Any

from k8slite.api import meta
from k8slite.api.validation import FieldErrors
from k8slite.component.objects import Obj

SUBRESOURCE = "ephemeralcontainers"
FIELD = "ephemeralContainers"
# The EphemeralContainerCommon fields upstream refuses (validateFieldAllowList): each
# counts as set when it holds anything but its zero value.
_FORBIDDEN = (
    "ports",
    "resources",
    "resizePolicy",
    "lifecycle",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "restartPolicy",
    "restartPolicyRules",
)
_CANNOT = "cannot be set for an Ephemeral Container"


def _zero(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_zero(v) for v in value.values())
    return value in (None, "", 0, False, [], {})


def validate_new(errs: FieldErrors, spec: Obj) -> None:
    """What an ephemeral container may not hold, beyond what any container may not."""
    path = f"spec.{FIELD}"
    regular = {
        c.get("name")
        for group in ("initContainers", "containers")
        for c in spec.get(group) or ()
        if isinstance(c, dict)
    }
    seen: set[Any] = set()
    for i, c in enumerate(spec.get(FIELD) or ()):
        cp = f"{path}[{i}]"
        if not isinstance(c, dict):
            continue
        name = c.get("name")
        if name and (name in regular or name in seen):
            errs.duplicate(f"{cp}.name", name)
        seen.add(name)
        for key in _FORBIDDEN:
            if not _zero(c.get(key)):
                errs.forbidden(f"{cp}.{key}", _CANNOT)
        for j, mount in enumerate(c.get("volumeMounts") or ()):
            if isinstance(mount, dict):
                for key in ("subPath", "subPathExpr"):
                    if mount.get(key):
                        errs.forbidden(f"{cp}.volumeMounts[{j}].{key}", _CANNOT)
        target = c.get("targetContainerName")
        if target and target not in regular:
            errs.not_found(f"{cp}.targetContainerName", target)


def validate_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    """Existing ephemeral containers stay as they are (upstream's messages, its key path)."""
    path = f"spec.{FIELD}"
    by_name = {
        c.get("name"): c for c in (new.get("spec") or {}).get(FIELD) or () if isinstance(c, dict)
    }
    for before in (old.get("spec") or {}).get(FIELD) or ():
        name = before.get("name")
        after = by_name.get(name)
        if after is None:
            errs.forbidden(path, f'existing ephemeral containers "{name}" may not be removed\n')
        elif after != before:
            errs.forbidden(
                f"{path}[{name}]",
                f'existing ephemeral containers "{name}" may not be changed\n'
                + _diff(before, after),
            )


def _diff(before: Obj, after: Obj) -> str:
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            lines.append(f"- {key}: {json.dumps(before.get(key))}")
            lines.append(f"+ {key}: {json.dumps(after.get(key))}")
    return "\n".join(lines)


def apply_update(new: Obj, old: Obj) -> Obj:
    """The stored pod with the request's spec.ephemeralContainers and nothing else of it."""
    out = meta.clone(old)
    spec = out.setdefault("spec", {})
    wanted = (new.get("spec") or {}).get(FIELD) if isinstance(new.get("spec"), dict) else None
    if wanted:
        spec[FIELD] = wanted
    else:
        spec.pop(FIELD, None)
    return out
