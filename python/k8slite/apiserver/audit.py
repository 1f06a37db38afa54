"""The audit log: one JSON line per mutating request, in upstream's audit.k8s.io/v1 Event shape.

Each line is an Event at level Metadata and stage ResponseComplete (so the tools that read
upstream audit logs read these): user and groups (and the impersonated user, when the
request impersonated one), verb, the object (group, version,
resource, subresource, namespace, name), the response code, the request's start and end
times, and its latency in the annotation "k8slite.io/latency-seconds".
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any

from k8slite._native import dumps
from k8slite.apiserver.authn import UserInfo

LATENCY_ANNOTATION = "k8slite.io/latency-seconds"
# Annotations admission adds to a request's audit event (webhooks' auditAnnotations, a
# policy's Audit action), kept in the request's ASGI scope until the event is written.
ANNOTATIONS_KEY = "k8slite.audit.annotations"


def annotate(scope: MutableMapping[str, Any], key: str, value: str) -> None:
    """Add an annotation to this request's audit event (the first value of a key stays)."""
    scope.setdefault(ANNOTATIONS_KEY, {}).setdefault(key, value)


def _timestamp(when: float) -> str:
    """RFC 3339 with microseconds, as upstream's MicroTime."""
    moment = dt.datetime.fromtimestamp(when, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _user_info(user: UserInfo) -> dict[str, Any]:
    """authentication.k8s.io/v1 UserInfo: empty uid and extra are left out."""
    out: dict[str, Any] = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = user.extra
    return out


class AuditLog:
    """Appends events to a file, one line each, flushed as written (tail -f shows them)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", buffering=1, encoding="utf-8")

    def close(self) -> None:
        self._file.close()

    def record(
        self,
        *,
        user: UserInfo | None,
        verb: str,
        uri: str,
        code: int,
        started: float,
        finished: float,
        source_ip: str,
        user_agent: str,
        object_ref: dict[str, str] | None,
        impersonated: UserInfo | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": str(uuid.uuid4()),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": verb,
            "user": _user_info(user) if user else {},
            "sourceIPs": [source_ip] if source_ip else [],
            "userAgent": user_agent,
        }
        if impersonated is not None:
            event["impersonatedUser"] = _user_info(impersonated)
        if object_ref:
            event["objectRef"] = object_ref
        event["responseStatus"] = {"metadata": {}, "code": code}
        event["requestReceivedTimestamp"] = _timestamp(started)
        event["stageTimestamp"] = _timestamp(finished)
        event["annotations"] = {
            **(annotations or {}),
            LATENCY_ANNOTATION: f"{finished - started:.6f}",
        }
        self._file.write(dumps(event).decode() + "\n")
