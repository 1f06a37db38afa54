"""A container's environment: env, envFrom, downward API fields and service variables."""

from __future__ import annotations

import base64
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping

from k8slite.api.quantity import QuantityError, milli_value, parse_quantity
from k8slite.component.objects import Obj, meta, namespace_of
from k8slite.kubelet.runtime.base import expand_vars

# (kind, namespace, name) -> the object, or None when it does not exist.
ObjectGetter = Callable[[str, str, str], Awaitable[Obj | None]]


class ConfigError(Exception):
    """The container cannot be configured yet: CreateContainerConfigError, upstream's words."""

    reason = "CreateContainerConfigError"


def _kind_word(kind: str) -> str:
    return "configmap" if kind == "ConfigMap" else "secret"


def object_data(kind: str, obj: Obj) -> dict[str, str]:
    """The text values of a ConfigMap (data and binaryData) or Secret (decoded)."""
    if kind == "ConfigMap":
        out = dict(obj.get("data") or {})
        for key, value in (obj.get("binaryData") or {}).items():
            out[key] = base64.b64decode(value).decode(errors="replace")
        return out
    out = {
        k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()
    }
    out.update(obj.get("stringData") or {})
    return out


async def _source(
    get: ObjectGetter, kind: str, namespace: str, name: str, optional: bool
) -> dict[str, str] | None:
    obj = await get(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{_kind_word(kind)} "{name}" not found')
    return object_data(kind, obj)


async def _key_ref(get: ObjectGetter, kind: str, namespace: str, ref: Obj) -> str | None:
    optional = bool(ref.get("optional"))
    data = await _source(get, kind, namespace, ref.get("name") or "", optional)
    if data is None:
        return None
    key = ref.get("key") or ""
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name')}")
    return data[key]


def field_ref_value(pod: Obj, path: str, *, pod_ips: list[str], host_ip: str) -> str:
    """The downward API's fieldRef values (env and volumes)."""
    m = meta(pod)
    spec = pod.get("spec") or {}
    for prefix, source in (
        ("metadata.labels", m.get("labels")),
        ("metadata.annotations", m.get("annotations")),
    ):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((source or {}).get(path[len(prefix) + 2 : -2], ""))
        if path == prefix:
            # The whole map, one key="value" per line, sorted (downward API volumes).
            return "\n".join(f'{k}="{v}"' for k, v in sorted((source or {}).items()))
    simple = {
        "metadata.name": m.get("name", ""),
        "metadata.namespace": m.get("namespace", ""),
        "metadata.uid": m.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ips[0] if pod_ips else "",
        "status.podIPs": ",".join(pod_ips),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise ConfigError(f'unsupported fieldPath: "{path}"')
    return str(simple[path])


def resource_field_value(container: Obj, ref: Obj, allocatable: Mapping[str, str]) -> str:
    """limits.cpu, requests.memory, ... in units of the divisor, rounded up.

    An unset limit is the node's allocatable amount, as upstream.
    """
    resource = ref.get("resource") or ""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    values = resources.get(kind) or {}
    value = values.get(name)
    if value is None:
        value = allocatable.get(name, "0") if kind == "limits" else "0"
    try:
        divisor = ref.get("divisor") or "1"
        if name == "cpu":
            return str(math.ceil(milli_value(value) / max(milli_value(divisor), 1)))
        return str(math.ceil(parse_quantity(value) / parse_quantity(divisor)))
    except (QuantityError, ZeroDivisionError):
        raise ConfigError(f'invalid resource quantity in "{resource}"') from None


def _service_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: Iterable[Obj]) -> dict[str, str]:
    """FOO_SERVICE_HOST, FOO_SERVICE_PORT(_NAME) and the docker-link FOO_PORT_* variables."""
    out: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        base = _service_name(svc["metadata"]["name"])
        out[f"{base}_SERVICE_HOST"] = ip
        out[f"{base}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                out[f"{base}_SERVICE_PORT_{_service_name(p['name'])}"] = str(p.get("port"))
        first = ports[0]
        host = f"[{ip}]" if ":" in ip else ip
        out[f"{base}_PORT"] = (
            f"{str(first.get('protocol') or 'TCP').lower()}://{host}:{first.get('port')}"
        )
        for p in ports:
            proto = str(p.get("protocol") or "TCP")
            prefix = f"{base}_PORT_{p.get('port')}_{proto.upper()}"
            out[prefix] = f"{proto.lower()}://{host}:{p.get('port')}"
            out[f"{prefix}_PROTO"] = proto.lower()
            out[f"{prefix}_PORT"] = str(p.get("port"))
            out[f"{prefix}_ADDR"] = ip
    return out


def pod_services(pod: Obj, services: Iterable[Obj]) -> list[Obj]:
    """The services whose variables a pod gets: its namespace's (when enableServiceLinks) and
    always the API server's own "kubernetes" service from default."""
    ns = namespace_of(pod) or "default"
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    picked = {}
    for svc in services:
        m = meta(svc)
        if m.get("namespace") == "default" and m.get("name") == "kubernetes":
            picked[m["name"]] = svc
        elif links and m.get("namespace") == ns:
            picked.setdefault(m.get("name"), svc)
    return list(picked.values())


async def container_env(
    pod: Obj,
    container: Obj,
    *,
    get: ObjectGetter,
    services: Iterable[Obj],
    pod_ips: list[str],
    host_ip: str,
    allocatable: Mapping[str, str],
) -> list[tuple[str, str]]:
    """The container's variables in order: envFrom, env, then service variables not set.

    Raises ConfigError for a missing ConfigMap, Secret or key that is not optional.
    """
    namespace = namespace_of(pod) or "default"
    svc_env = service_env(pod_services(pod, services))
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        prefix = source.get("prefix") or ""
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = await _source(
                get, kind, namespace, ref.get("name") or "", bool(ref.get("optional"))
            )
            for k, v in (data or {}).items():
                # Upstream skips keys that cannot be variable names (and reports an event).
                if k and "=" not in prefix + k:
                    env[prefix + k] = v
    for var in container.get("env") or ():
        name = var["name"]
        value_from = var.get("valueFrom")
        if value_from is None:
            value = var.get("value") or ""
            # $(VAR) refers to variables defined before it, then to service variables.
            env[name] = expand_vars(value, {**svc_env, **env}) if value else ""
            continue
        resolved: str | None
        if "configMapKeyRef" in value_from:
            resolved = await _key_ref(get, "ConfigMap", namespace, value_from["configMapKeyRef"])
        elif "secretKeyRef" in value_from:
            resolved = await _key_ref(get, "Secret", namespace, value_from["secretKeyRef"])
        elif "fieldRef" in value_from:
            resolved = field_ref_value(
                pod, value_from["fieldRef"].get("fieldPath", ""), pod_ips=pod_ips, host_ip=host_ip
            )
        elif "resourceFieldRef" in value_from:
            resolved = resource_field_value(container, value_from["resourceFieldRef"], allocatable)
        else:
            resolved = ""
        if resolved is not None:
            env[name] = resolved
    out = list(env.items())
    out.extend((k, v) for k, v in svc_env.items() if k not in env)
    return out
