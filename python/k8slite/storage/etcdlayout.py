"""How our keys and values look in etcd.

Keys. etcd holds upstream's keys for the core and apps kinds (/registry/pods/<ns>/<name>,
/registry/services/specs/..., /registry/deployments/...), where our storage keys carry the
group (/registry/core/pods/...); upstream_key and storage_key map between the two.

Values. Our encoders stamp the commit revision into the bytes, but etcd assigns it only at
commit. So a value is stored as a header line naming a placeholder, then the bytes the
encoder gave for that placeholder: `k8slite-rv:<digits>\\n{...json...}`. Reading replaces the
placeholder with the key's mod revision. The placeholder is 18 random digits per write, so it
cannot be confused with anything else in the object.
"""

from __future__ import annotations

import secrets
from typing import Any

_HEADER = b"k8slite-rv:"

# Upstream's etcd keys for the core and apps kinds: the resource without its group (and
# four historical names), where our storage keys carry the group ("/core/pods/" here is
# "/pods/" in etcd). Both sides are whole path segments; no value is a prefix of another,
# and none is a group name or another first segment we store under ("masterleases",
# "k8slite", groups with dots), so the mapping is one-to-one both ways. Every other key
# (other groups, custom resources, our own) is kept as it is.
_CORE_KEYS = {
    "configmaps": "configmaps",
    "endpoints": "services/endpoints",
    "events": "events",
    "namespaces": "namespaces",
    "nodes": "minions",
    "persistentvolumeclaims": "persistentvolumeclaims",
    "persistentvolumes": "persistentvolumes",
    "pods": "pods",
    "replicationcontrollers": "controllers",
    "secrets": "secrets",
    "serviceaccounts": "serviceaccounts",
    "services": "services/specs",
}
_APPS_KEYS = ("controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets")
_TO_UPSTREAM = {f"/core/{plural}/": f"/{key}/" for plural, key in _CORE_KEYS.items()} | {
    f"/apps/{plural}/": f"/{plural}/" for plural in _APPS_KEYS
}
_FROM_UPSTREAM = {key: ours for ours, key in _TO_UPSTREAM.items()}


def path_head(path: str, segments: int) -> str:
    """The first `segments` segments of "/a/b/c..." with their slashes ("/a/b/"), or ""."""
    parts = path.split("/", segments + 1)
    return "/".join(parts[: segments + 1]) + "/" if len(parts) > segments + 1 else ""


def upstream_key(path: str) -> str:
    """The etcd key (below the prefix) of a storage key below /registry: "/core/pods/ns/x"
    is "/pods/ns/x", "/apps/deployments/ns/x" is "/deployments/ns/x", as upstream's."""
    head = path_head(path, 2)
    key = _TO_UPSTREAM.get(head)
    return key + path[len(head) :] if key is not None else path


def storage_key(path: str) -> str:
    """upstream_key's inverse."""
    for segments in (1, 2):
        head = path_head(path, segments)
        ours = _FROM_UPSTREAM.get(head)
        if ours is not None:
            return ours + path[len(head) :]
    return path


def encode_value(encode: Any) -> bytes:
    """The stored form of an encoder's output: a placeholder revision, replaced on read."""
    placeholder = secrets.randbelow(9 * 10**17) + 10**17
    body: bytes = encode(placeholder)
    digits = str(placeholder).encode()
    return _HEADER + (digits if digits in body else b"") + b"\n" + body


def decode_value(value: bytes, rv: int) -> bytes:
    """The bytes an encoder would have given for rv (values without our header: as stored)."""
    if not value.startswith(_HEADER):
        return value
    end = value.index(b"\n")
    placeholder = value[len(_HEADER) : end]
    body = value[end + 1 :]
    return body.replace(placeholder, str(rv).encode()) if placeholder else body
