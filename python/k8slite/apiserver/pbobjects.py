"""Protobuf request bodies of the kinds kubectl's typed clients create and update.

client-go's generated clients send built-in kinds as application/vnd.kubernetes.protobuf
(`kubectl create deployment|service|configmap|secret|namespace|serviceaccount` do) and accept
JSON answers. A body is the magic "k8s\\0" and a runtime.Unknown {typeMeta = 1, raw = 2}; raw
is the object's message. The tables below give the field numbers of upstream's generated
messages for these kinds (the fields kubectl fills in and the common ones around them);
anything else in a body is ignored, as a newer client's unknown field would be.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any, Union

from k8slite.api import errors

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# A message: field number -> (JSON name, kind). A kind is "str", "int", "bool", "bytes"
# (base64 in JSON), "time", "intstr", "quantity", a nested message, ("list", kind) for a
# repeated field or ("map", kind) for a map<string, kind>. Go's protobuf encoding writes
# every non-pointer field, zero or not, where JSON omits zero values: "int" and "bool"
# fields equal to zero (and empty strings) are dropped; "int?" and "bool?" are pointers,
# kept whatever their value. An empty JSON name inlines an embedded struct.
Kind = Union[str, "Message", tuple[str, Any]]
Message = dict[int, tuple[str, Kind]]

_STRS = ("list", "str")
_LABELS = ("map", "str")
OBJECT_META: Message = {
    1: ("name", "str"),
    2: ("generateName", "str"),
    3: ("namespace", "str"),
    5: ("uid", "str"),
    6: ("resourceVersion", "str"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "time"),
    11: ("labels", _LABELS),
    12: ("annotations", _LABELS),
    13: (
        "ownerReferences",
        (
            "list",
            {
                1: ("kind", "str"),
                3: ("name", "str"),
                4: ("uid", "str"),
                5: ("apiVersion", "str"),
                6: ("controller", "bool?"),
                7: ("blockOwnerDeletion", "bool?"),
            },
        ),
    ),
    14: ("finalizers", _STRS),
}
LABEL_SELECTOR: Message = {
    1: ("matchLabels", _LABELS),
    2: (
        "matchExpressions",
        ("list", {1: ("key", "str"), 2: ("operator", "str"), 3: ("values", _STRS)}),
    ),
}
_LOCAL_REF: Message = {1: ("name", "str")}
_KEY_SELECTOR: Message = {1: ("", _LOCAL_REF), 2: ("key", "str"), 3: ("optional", "bool?")}
_ENV_VAR: Message = {
    1: ("name", "str"),
    2: ("value", "str"),
    3: (
        "valueFrom",
        {
            1: ("fieldRef", {1: ("apiVersion", "str"), 2: ("fieldPath", "str")}),
            3: ("configMapKeyRef", _KEY_SELECTOR),
            4: ("secretKeyRef", _KEY_SELECTOR),
        },
    ),
}
_RESOURCES: Message = {1: ("limits", ("map", "quantity")), 2: ("requests", ("map", "quantity"))}
_PROBE: Message = {
    1: ("exec", {1: ("command", _STRS)}),
    2: (
        "httpGet",
        {1: ("path", "str"), 2: ("port", "intstr"), 3: ("host", "str"), 4: ("scheme", "str")},
    ),
    3: ("tcpSocket", {1: ("port", "intstr"), 2: ("host", "str")}),
}
# Probe embeds its handler (field 1) inline in JSON: handled by _INLINE below.
_PROBE_FIELDS: Message = {
    1: ("", _PROBE),
    2: ("initialDelaySeconds", "int"),
    3: ("timeoutSeconds", "int"),
    4: ("periodSeconds", "int"),
    5: ("successThreshold", "int"),
    6: ("failureThreshold", "int"),
}
CONTAINER: Message = {
    1: ("name", "str"),
    2: ("image", "str"),
    3: ("command", _STRS),
    4: ("args", _STRS),
    5: ("workingDir", "str"),
    6: (
        "ports",
        (
            "list",
            {
                1: ("name", "str"),
                2: ("hostPort", "int"),
                3: ("containerPort", "int"),
                4: ("protocol", "str"),
                5: ("hostIP", "str"),
            },
        ),
    ),
    7: ("env", ("list", _ENV_VAR)),
    8: ("resources", _RESOURCES),
    9: (
        "volumeMounts",
        (
            "list",
            {
                1: ("name", "str"),
                2: ("readOnly", "bool"),
                3: ("mountPath", "str"),
                4: ("subPath", "str"),
            },
        ),
    ),
    10: ("livenessProbe", _PROBE_FIELDS),
    11: ("readinessProbe", _PROBE_FIELDS),
    13: ("terminationMessagePath", "str"),
    14: ("imagePullPolicy", "str"),
    16: ("stdin", "bool"),
    17: ("stdinOnce", "bool"),
    18: ("tty", "bool"),
    20: ("terminationMessagePolicy", "str"),
    22: ("startupProbe", _PROBE_FIELDS),
}
POD_SPEC: Message = {
    1: (
        "volumes",
        (
            "list",
            {
                1: ("name", "str"),
                2: (
                    "",
                    {
                        1: ("hostPath", {1: ("path", "str"), 2: ("type", "str")}),
                        2: ("emptyDir", {1: ("medium", "str"), 2: ("sizeLimit", "quantity")}),
                        6: (
                            "secret",
                            {
                                1: ("secretName", "str"),
                                3: ("defaultMode", "int?"),
                                4: ("optional", "bool?"),
                            },
                        ),
                        19: (
                            "configMap",
                            {
                                1: ("", _LOCAL_REF),
                                3: ("defaultMode", "int?"),
                                4: ("optional", "bool?"),
                            },
                        ),
                    },
                ),
            },
        ),
    ),
    2: ("containers", ("list", CONTAINER)),
    3: ("restartPolicy", "str"),
    4: ("terminationGracePeriodSeconds", "int?"),
    5: ("activeDeadlineSeconds", "int?"),
    6: ("dnsPolicy", "str"),
    7: ("nodeSelector", _LABELS),
    8: ("serviceAccountName", "str"),
    9: ("serviceAccount", "str"),
    10: ("nodeName", "str"),
    11: ("hostNetwork", "bool"),
    15: ("imagePullSecrets", ("list", _LOCAL_REF)),
    16: ("hostname", "str"),
    17: ("subdomain", "str"),
    19: ("schedulerName", "str"),
    20: ("initContainers", ("list", CONTAINER)),
    22: (
        "tolerations",
        (
            "list",
            {
                1: ("key", "str"),
                2: ("operator", "str"),
                3: ("value", "str"),
                4: ("effect", "str"),
                5: ("tolerationSeconds", "int?"),
            },
        ),
    ),
    24: ("priorityClassName", "str"),
    25: ("priority", "int?"),
}
POD_TEMPLATE: Message = {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)}
_SERVICE_SPEC: Message = {
    1: (
        "ports",
        (
            "list",
            {
                1: ("name", "str"),
                2: ("protocol", "str"),
                3: ("port", "int"),
                4: ("targetPort", "intstr"),
                5: ("nodePort", "int"),
                6: ("appProtocol", "str"),
            },
        ),
    ),
    2: ("selector", _LABELS),
    3: ("clusterIP", "str"),
    4: ("type", "str"),
    5: ("externalIPs", _STRS),
    7: ("sessionAffinity", "str"),
    10: ("externalName", "str"),
    11: ("externalTrafficPolicy", "str"),
    18: ("clusterIPs", _STRS),
    19: ("ipFamilies", _STRS),
    17: ("ipFamilyPolicy", "str"),
}
_DEPLOYMENT_SPEC: Message = {
    1: ("replicas", "int?"),
    2: ("selector", LABEL_SELECTOR),
    3: ("template", POD_TEMPLATE),
    4: (
        "strategy",
        {
            1: ("type", "str"),
            2: ("rollingUpdate", {1: ("maxUnavailable", "intstr"), 2: ("maxSurge", "intstr")}),
        },
    ),
    5: ("minReadySeconds", "int"),
    6: ("revisionHistoryLimit", "int?"),
    7: ("paused", "bool"),
    9: ("progressDeadlineSeconds", "int?"),
}
# batch/v1 JobSpec (`kubectl create job`); policies are not among what kubectl fills in.
JOB_SPEC: Message = {
    1: ("parallelism", "int?"),
    2: ("completions", "int?"),
    3: ("activeDeadlineSeconds", "int?"),
    4: ("selector", LABEL_SELECTOR),
    5: ("manualSelector", "bool?"),
    6: ("template", POD_TEMPLATE),
    7: ("backoffLimit", "int?"),
    8: ("ttlSecondsAfterFinished", "int?"),
    9: ("completionMode", "str"),
    10: ("suspend", "bool?"),
    12: ("backoffLimitPerIndex", "int?"),
    13: ("maxFailedIndexes", "int?"),
    14: ("podReplacementPolicy", "str"),
    15: ("managedBy", "str"),
}
# batch/v1 CronJobSpec (`kubectl create cronjob`).
_CRONJOB_SPEC: Message = {
    1: ("schedule", "str"),
    8: ("timeZone", "str"),
    2: ("startingDeadlineSeconds", "int?"),
    3: ("concurrencyPolicy", "str"),
    4: ("suspend", "bool?"),
    5: ("jobTemplate", {1: ("metadata", OBJECT_META), 2: ("spec", JOB_SPEC)}),
    6: ("successfulJobsHistoryLimit", "int?"),
    7: ("failedJobsHistoryLimit", "int?"),
}

# autoscaling/v2 HorizontalPodAutoscalerSpec (`kubectl autoscale`, which tries v2 first).
_METRIC_TARGET: Message = {
    1: ("type", "str"),
    2: ("value", "quantity"),
    3: ("averageValue", "quantity"),
    4: ("averageUtilization", "int?"),
}
_METRIC_IDENTIFIER: Message = {1: ("name", "str"), 2: ("selector", LABEL_SELECTOR)}
_CROSS_VERSION_REF: Message = {1: ("kind", "str"), 2: ("name", "str"), 3: ("apiVersion", "str")}
_SCALING_RULES: Message = {
    3: ("stabilizationWindowSeconds", "int?"),
    1: ("selectPolicy", "str"),
    2: (
        "policies",
        ("list", {1: ("type", "str"), 2: ("value", "int"), 3: ("periodSeconds", "int")}),
    ),
    4: ("tolerance", "quantity"),
}
_HPA_V2_SPEC: Message = {
    1: ("scaleTargetRef", _CROSS_VERSION_REF),
    2: ("minReplicas", "int?"),
    3: ("maxReplicas", "int"),
    4: (
        "metrics",
        (
            "list",
            {
                1: ("type", "str"),
                2: (
                    "object",
                    {
                        1: ("describedObject", _CROSS_VERSION_REF),
                        2: ("target", _METRIC_TARGET),
                        3: ("metric", _METRIC_IDENTIFIER),
                    },
                ),
                3: ("pods", {1: ("metric", _METRIC_IDENTIFIER), 2: ("target", _METRIC_TARGET)}),
                4: ("resource", {1: ("name", "str"), 2: ("target", _METRIC_TARGET)}),
                5: (
                    "external",
                    {1: ("metric", _METRIC_IDENTIFIER), 2: ("target", _METRIC_TARGET)},
                ),
                7: (
                    "containerResource",
                    {1: ("name", "str"), 2: ("target", _METRIC_TARGET), 3: ("container", "str")},
                ),
            },
        ),
    ),
    5: ("behavior", {1: ("scaleUp", _SCALING_RULES), 2: ("scaleDown", _SCALING_RULES)}),
}
# autoscaling/v1's, kubectl's fallback where v2 is not served.
_HPA_V1_SPEC: Message = {
    1: ("scaleTargetRef", _CROSS_VERSION_REF),
    2: ("minReplicas", "int?"),
    3: ("maxReplicas", "int"),
    4: ("targetCPUUtilizationPercentage", "int?"),
}

# Access reviews: `kubectl auth can-i` and `kubectl auth whoami` post these.
_RESOURCE_ATTRIBUTES: Message = {
    1: ("namespace", "str"),
    2: ("verb", "str"),
    3: ("group", "str"),
    4: ("version", "str"),
    5: ("resource", "str"),
    6: ("subresource", "str"),
    7: ("name", "str"),
}
_ACCESS_SPEC: Message = {
    1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", {1: ("path", "str"), 2: ("verb", "str")}),
}
_SUBJECT_ACCESS_SPEC: Message = {
    **_ACCESS_SPEC,
    3: ("user", "str"),
    4: ("groups", _STRS),
    6: ("uid", "str"),
}

# DeleteOptions is registered in every group version (metav1.AddToGroupVersion), so a typed
# client sends it under its own group's apiVersion (helm's release storage: "v1").
DELETE_OPTIONS: Message = {
    1: ("gracePeriodSeconds", "int?"),
    2: ("preconditions", {1: ("uid", "str"), 2: ("resourceVersion", "str")}),
    3: ("orphanDependents", "bool?"),
    4: ("propagationPolicy", "str"),
    5: ("dryRun", _STRS),
}

_PDB_SPEC: Message = {
    1: ("minAvailable", "intstr"),
    2: ("selector", LABEL_SELECTOR),
    3: ("maxUnavailable", "intstr"),
    4: ("unhealthyPodEvictionPolicy", "str"),
}
# `kubectl drain` evicts through the typed policy/v1 client (v1beta1 from older clients).
_EVICTION: Message = {1: ("metadata", OBJECT_META), 2: ("deleteOptions", DELETE_OPTIONS)}

# rbac.authorization.k8s.io/v1 (`kubectl create role|clusterrole|rolebinding|
# clusterrolebinding`).
_POLICY_RULE: Message = {
    1: ("verbs", _STRS),
    2: ("apiGroups", _STRS),
    3: ("resources", _STRS),
    4: ("resourceNames", _STRS),
    5: ("nonResourceURLs", _STRS),
}
_ROLE: Message = {1: ("metadata", OBJECT_META), 2: ("rules", ("list", _POLICY_RULE))}
_BINDING: Message = {
    1: ("metadata", OBJECT_META),
    2: (
        "subjects",
        (
            "list",
            {
                1: ("kind", "str"),
                2: ("apiGroup", "str"),
                3: ("name", "str"),
                4: ("namespace", "str"),
            },
        ),
    ),
    3: ("roleRef", {1: ("apiGroup", "str"), 2: ("kind", "str"), 3: ("name", "str")}),
}
_RBAC = "rbac.authorization.k8s.io/v1"
# certificates.k8s.io/v1: what `kubectl certificate approve|deny` sends to the approval
# subresource (the whole object back). The user's extra (a map of ExtraValue) is left out:
# the server fills spec's user fields itself.
_CSR_CONDITION: Message = {
    1: ("type", "str"),
    6: ("status", "str"),
    2: ("reason", "str"),
    3: ("message", "str"),
    4: ("lastUpdateTime", "time"),
    5: ("lastTransitionTime", "time"),
}
_CSR: Message = {
    1: ("metadata", OBJECT_META),
    2: (
        "spec",
        {
            1: ("request", "bytes"),
            7: ("signerName", "str"),
            8: ("expirationSeconds", "int?"),
            5: ("usages", _STRS),
            2: ("username", "str"),
            3: ("uid", "str"),
            4: ("groups", _STRS),
        },
    ),
    3: ("status", {1: ("conditions", ("list", _CSR_CONDITION)), 2: ("certificate", "bytes")}),
}

KINDS: dict[tuple[str, str], Message] = {
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): _CSR,
    ("v1", "Namespace"): {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", _STRS)})},
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META),
        2: ("data", _LABELS),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool?"),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "str"),
        4: ("stringData", _LABELS),
        5: ("immutable", "bool?"),
    },
    ("v1", "Service"): {1: ("metadata", OBJECT_META), 2: ("spec", _SERVICE_SPEC)},
    ("v1", "ServiceAccount"): {
        1: ("metadata", OBJECT_META),
        3: ("imagePullSecrets", ("list", _LOCAL_REF)),
    },
    ("apps/v1", "Deployment"): {1: ("metadata", OBJECT_META), 2: ("spec", _DEPLOYMENT_SPEC)},
    ("v1", "Pod"): {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)},
    ("policy/v1", "PodDisruptionBudget"): {1: ("metadata", OBJECT_META), 2: ("spec", _PDB_SPEC)},
    ("policy/v1", "Eviction"): _EVICTION,
    ("policy/v1beta1", "Eviction"): _EVICTION,
    ("batch/v1", "Job"): {1: ("metadata", OBJECT_META), 2: ("spec", JOB_SPEC)},
    ("batch/v1", "CronJob"): {1: ("metadata", OBJECT_META), 2: ("spec", _CRONJOB_SPEC)},
    ("autoscaling/v2", "HorizontalPodAutoscaler"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", _HPA_V2_SPEC),
    },
    ("autoscaling/v1", "HorizontalPodAutoscaler"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", _HPA_V1_SPEC),
    },
    (_RBAC, "Role"): _ROLE,
    (_RBAC, "ClusterRole"): {
        **_ROLE,
        3: ("aggregationRule", {1: ("clusterRoleSelectors", ("list", LABEL_SELECTOR))}),
    },
    (_RBAC, "RoleBinding"): _BINDING,
    (_RBAC, "ClusterRoleBinding"): _BINDING,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", _ACCESS_SPEC),
    },
    ("authorization.k8s.io/v1", "SubjectAccessReview"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", _SUBJECT_ACCESS_SPEC),
    },
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", _SUBJECT_ACCESS_SPEC),
    },
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("namespace", "str")}),
    },
    ("authentication.k8s.io/v1", "SelfSubjectReview"): {1: ("metadata", OBJECT_META)},
    # `kubectl create token`
    ("authentication.k8s.io/v1", "TokenRequest"): {
        1: ("metadata", OBJECT_META),
        2: (
            "spec",
            {
                1: ("audiences", _STRS),
                3: (
                    "boundObjectRef",
                    {
                        1: ("kind", "str"),
                        2: ("apiVersion", "str"),
                        3: ("name", "str"),
                        4: ("uid", "str"),
                    },
                ),
                4: ("expirationSeconds", "int?"),
            },
        ),
    },
    ("authentication.k8s.io/v1", "TokenReview"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("token", "str"), 2: ("audiences", _STRS)}),
    },
}


class _Malformed(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value): ints for varints, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _Malformed("truncated field")
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    if pos != len(data):
        raise _Malformed("truncated field")
    return out


def _signed(value: int) -> int:
    """int32/int64 fields are varints in two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _bytes(value: int | bytes, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise _Malformed(f"{name} must be length-delimited")
    return value


def _scalar(kind: Kind, value: int | bytes, name: str) -> Any:
    if kind == "str":
        return _bytes(value, name).decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(_bytes(value, name)).decode()
    if kind in ("int", "bool", "int?", "bool?"):
        if isinstance(value, bytes):  # a packed or length-delimited number
            value, _ = _varint(value, 0)
        return _signed(value) if kind.startswith("int") else bool(value)
    if kind == "time":
        parts = dict(_fields(_bytes(value, name)))
        seconds = _signed(int(parts.get(1, 0)))  # type: ignore[arg-type]
        if seconds == 0:
            return None
        stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "intstr":
        parts = dict(_fields(_bytes(value, name)))
        if parts.get(1, 0) == 1:
            return _bytes(parts.get(3, b""), name).decode("utf-8")
        return _signed(int(parts.get(2, 0)))  # type: ignore[arg-type]
    if kind == "quantity":
        return _bytes(dict(_fields(_bytes(value, name))).get(1, b""), name).decode("utf-8")
    if isinstance(kind, dict):
        return _message(_bytes(value, name), kind)
    raise _Malformed(f"unknown kind for {name}")


def _message(data: bytes, schema: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        entry = schema.get(number)
        if entry is None:
            continue
        name, kind = entry
        if isinstance(kind, tuple) and kind[0] == "list":
            out.setdefault(name, []).append(_scalar(kind[1], value, name))
        elif isinstance(kind, tuple) and kind[0] == "map":
            pair = dict(_fields(_bytes(value, name)))
            key = _bytes(pair.get(1, b""), name).decode("utf-8")
            item = pair.get(2, b"" if kind[1] != "int" else 0)
            out.setdefault(name, {})[key] = _scalar(kind[1], item, name)
        elif name == "":
            out.update(_scalar(kind, value, name))  # an embedded (inlined) struct
        else:
            decoded = _scalar(kind, value, name)
            if decoded is None or (decoded in ("", 0, False) and kind in ("str", "int", "bool")):
                continue
            out[name] = decoded
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object a protobuf body carries: 400 if malformed, 415 if unknown."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body does not start with the k8s magic prefix")
    try:
        unknown = _message(
            body[len(MAGIC) :],
            {1: ("typeMeta", {1: ("apiVersion", "str"), 2: ("kind", "str")}), 2: ("raw", "bytes")},
        )
        meta = unknown.get("typeMeta") or {}
        key = (meta.get("apiVersion", ""), meta.get("kind", ""))
        schema = KINDS.get(key) or (DELETE_OPTIONS if key[1] == "DeleteOptions" else None)
        if schema is None:
            raise errors.unsupported_media_type(CONTENT_TYPE)
        obj = _message(base64.b64decode(unknown.get("raw", "")), schema)
    except (_Malformed, UnicodeDecodeError, OverflowError, ValueError) as e:
        raise errors.bad_request(f"protobuf decode error: {e}") from None
    return {"apiVersion": key[0], "kind": key[1], **obj}
