"""core/v1 kinds: defaults and validation for pods, services, namespaces, nodes and the rest."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any

from k8slite.api import ephemeralcontainers, errors, meta
from k8slite.api.quantity import QuantityError, parse_quantity
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import (
    FieldErrors,
    check_config_key,
    check_dns_label,
    check_dns_subdomain,
    check_env_name,
    check_int_or_port_name,
    check_labels,
    check_non_negative,
    check_port_name,
    check_port_number,
    check_quantity,
)

PROTOCOLS = ["SCTP", "TCP", "UDP"]
_DNS1035_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
# Tolerations every pod gets from upstream's DefaultTolerationSeconds admission plugin.
DEFAULT_NOT_READY_SECONDS = 300
_DEFAULT_TOLERATIONS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


# ---------------------------------------------------------------------- pods


def default_container(c: Obj) -> None:
    image = c.get("image") or ""
    if "imagePullPolicy" not in c:
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last and "@" not in image else ""
        c["imagePullPolicy"] = (
            "Always" if tag in ("", "latest") and "@" not in image else "IfNotPresent"
        )
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    resources = c.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
    for port in c.get("ports") or ():
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            p.setdefault("timeoutSeconds", 1)
            p.setdefault("periodSeconds", 10)
            p.setdefault("successThreshold", 1)
            p.setdefault("failureThreshold", 3)
            http = p.get("httpGet")
            if isinstance(http, dict):
                http.setdefault("path", "/")
                http.setdefault("scheme", "HTTP")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for group in ("initContainers", "containers", ephemeralcontainers.FIELD):
        for c in spec.get(group) or ():
            if isinstance(c, dict):
                default_container(c)
    for v in spec.get("volumes") or ():
        if isinstance(v, dict):
            for source in ("configMap", "secret"):
                if isinstance(v.get(source), dict):
                    v[source].setdefault("defaultMode", 0o644)
            if isinstance(v.get("hostPath"), dict):
                v["hostPath"].setdefault("type", "")


def add_default_tolerations(spec: Obj) -> None:
    tolerations = spec.setdefault("tolerations", [])
    present = {(t.get("key"), t.get("effect")) for t in tolerations if isinstance(t, dict)}
    for key in _DEFAULT_TOLERATIONS:
        if (key, "NoExecute") not in present and (key, None) not in present:
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_NOT_READY_SECONDS,
                }
            )


def qos_class(spec: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    containers = list(spec.get("containers") or ()) + list(spec.get("initContainers") or ())
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in lim or _q(req.get(name, lim[name])) != _q(lim[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _q(value: Any) -> Any:
    try:
        return parse_quantity(value)
    except QuantityError:
        return value


def validate_container(errs: FieldErrors, path: str, c: Any, volumes: set[str]) -> None:
    if not isinstance(c, dict):
        errs.invalid(path, c, "must be an object")
        return
    name = c.get("name")
    if not name:
        errs.required(f"{path}.name")
    else:
        check_dns_label(errs, f"{path}.name", name)
    if not c.get("image"):
        errs.required(f"{path}.image")
    policy = c.get("imagePullPolicy")
    if policy not in (None, "Always", "IfNotPresent", "Never"):
        errs.not_supported(f"{path}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"])
    seen_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(c.get("ports") or ()):
        p = f"{path}.ports[{i}]"
        if not isinstance(port, dict):
            errs.invalid(p, port, "must be an object")
            continue
        check_port_number(errs, f"{p}.containerPort", port.get("containerPort"))
        if "hostPort" in port and port["hostPort"] not in (0, None):
            check_port_number(errs, f"{p}.hostPort", port["hostPort"])
        if port.get("name"):
            check_port_name(errs, f"{p}.name", port["name"])
        proto = port.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            errs.not_supported(f"{p}.protocol", proto, PROTOCOLS)
        key = (port.get("containerPort"), proto)
        if key in seen_ports:
            errs.duplicate(f"{p}", f"{key[0]}/{key[1]}")
        seen_ports.add(key)
    for i, env in enumerate(c.get("env") or ()):
        if not isinstance(env, dict) or not env.get("name"):
            errs.required(f"{path}.env[{i}].name")
        else:
            check_env_name(errs, f"{path}.env[{i}].name", env["name"])
    resources = c.get("resources") or {}
    for section in ("requests", "limits"):
        for rname, value in (resources.get(section) or {}).items():
            check_quantity(errs, f"{path}.resources.{section}[{rname}]", value)
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for rname, value in requests.items():
        if rname in limits and _q(value) > _q(limits[rname]):
            errs.invalid(
                f"{path}.resources.requests",
                value,
                f"must be less than or equal to {rname} limit of {limits[rname]}",
            )
    for i, mount in enumerate(c.get("volumeMounts") or ()):
        mp = f"{path}.volumeMounts[{i}]"
        if not isinstance(mount, dict):
            continue
        if not mount.get("name"):
            errs.required(f"{mp}.name")
        elif mount["name"] not in volumes:
            errs.not_found(f"{mp}.name", mount["name"])
        if not mount.get("mountPath"):
            errs.required(f"{mp}.mountPath")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        spec = c.get(probe)
        if isinstance(spec, dict):
            for field in (
                "initialDelaySeconds",
                "timeoutSeconds",
                "periodSeconds",
                "successThreshold",
                "failureThreshold",
            ):
                check_non_negative(errs, f"{path}.{probe}.{field}", spec.get(field))
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if spec.get(h)]
            if len(handlers) != 1:
                errs.required(f"{path}.{probe}", "must specify a handler type")


def validate_pod_spec(errs: FieldErrors, path: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        errs.required(path)
        return
    volumes: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or ()):
        vp = f"{path}.volumes[{i}]"
        if not isinstance(v, dict) or not v.get("name"):
            errs.required(f"{vp}.name")
            continue
        check_dns_label(errs, f"{vp}.name", v["name"])
        if v["name"] in volumes:
            errs.duplicate(f"{vp}.name", v["name"])
        volumes.add(v["name"])
    containers = spec.get("containers")
    if not containers:
        errs.required(f"{path}.containers")
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or ()):
            validate_container(errs, f"{path}.{group}[{i}]", c, volumes)
            if isinstance(c, dict) and c.get("name"):
                if c["name"] in names:
                    errs.duplicate(f"{path}.{group}[{i}].name", c["name"])
                names.add(c["name"])
    for i, c in enumerate(spec.get(ephemeralcontainers.FIELD) or ()):
        validate_container(errs, f"{path}.{ephemeralcontainers.FIELD}[{i}]", c, volumes)
    ephemeralcontainers.validate_new(errs, spec)
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        errs.not_supported(f"{path}.restartPolicy", policy, ["Always", "Never", "OnFailure"])
    _validate_pod_dns(errs, path, spec)
    check_non_negative(
        errs, f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds")
    )
    check_non_negative(errs, f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"))
    check_labels(errs, f"{path}.nodeSelector", spec.get("nodeSelector"))
    for i, t in enumerate(spec.get("tolerations") or ()):
        tp = f"{path}.tolerations[{i}]"
        if not isinstance(t, dict):
            errs.invalid(tp, t, "must be an object")
            continue
        op = t.get("operator", "Equal")
        if op not in ("Equal", "Exists"):
            errs.not_supported(f"{tp}.operator", op, ["Equal", "Exists"])
        if op == "Exists" and t.get("value"):
            errs.invalid(
                f"{tp}.operator", t["value"], "value must be empty when `operator` is 'Exists'"
            )
        effect = t.get("effect")
        if effect not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.not_supported(
                f"{tp}.effect", effect, ["NoExecute", "NoSchedule", "PreferNoSchedule"]
            )


DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
# Upstream's limits on spec.dnsConfig.
MAX_DNS_NAMESERVERS, MAX_DNS_SEARCHES, MAX_DNS_SEARCH_CHARS = 3, 32, 2048


def _validate_pod_dns(errs: FieldErrors, path: str, spec: Obj) -> None:
    """hostname, subdomain, dnsPolicy and dnsConfig, with upstream's limits and messages."""
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            check_dns_label(errs, f"{path}.{key}", spec[key])
    policy = spec.get("dnsPolicy")
    if policy is not None and policy not in DNS_POLICIES:
        errs.not_supported(f"{path}.dnsPolicy", policy, DNS_POLICIES)
    cp = f"{path}.dnsConfig"
    config = spec.get("dnsConfig")
    if policy == "None":
        if not config:
            errs.required(cp, "must provide `dnsConfig` when `dnsPolicy` is None")
            return
        if not config.get("nameservers"):
            errs.required(
                f"{cp}.nameservers",
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )
            return
    if not isinstance(config, dict):
        return
    servers = config.get("nameservers") or []
    if len(servers) > MAX_DNS_NAMESERVERS:
        errs.invalid(
            f"{cp}.nameservers",
            servers,
            f"must not have more than {MAX_DNS_NAMESERVERS} nameservers",
        )
    for i, server in enumerate(servers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            errs.invalid(
                f"{cp}.nameservers[{i}]",
                server,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
    searches = config.get("searches") or []
    if len(searches) > MAX_DNS_SEARCHES:
        errs.invalid(
            f"{cp}.searches", searches, f"must not have more than {MAX_DNS_SEARCHES} search paths"
        )
    if len(" ".join(searches)) > MAX_DNS_SEARCH_CHARS:
        errs.invalid(
            f"{cp}.searches",
            searches,
            f"must not have more than {MAX_DNS_SEARCH_CHARS} characters "
            "(including spaces) in the search list",
        )
    for i, search in enumerate(searches):
        # Relaxed as upstream's v1.35: "." alone, and underscores, are allowed.
        if search != ".":
            errs_one = FieldErrors()
            check_dns_subdomain(errs_one, "", search.removesuffix(".").replace("_", "a"))
            if errs_one:
                check_dns_subdomain(errs, f"{cp}.searches[{i}]", search.removesuffix("."))
    for i, option in enumerate(config.get("options") or ()):
        if not isinstance(option, dict) or not option.get("name"):
            errs.required(f"{cp}.options[{i}]", "must not be empty")


# Pod spec fields an update may change (upstream's list, simplified to whole fields).
_MUTABLE_POD_SPEC = {"activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"}


@register("", "Pod")
class PodStrategy(Strategy):
    return_deleted_object = True
    tracks_generation = True

    def grace_period(self, obj: Obj, requested: int | None) -> int:
        """Running pods get time to stop; unscheduled or finished ones go at once."""
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            requested = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(requested), 0)

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            default_pod_spec(spec)
            # serviceAccount is the deprecated name of the same field; upstream mirrors it.
            account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            spec["serviceAccountName"] = spec["serviceAccount"] = account
            spec.setdefault("priority", 0)
            add_default_tolerations(spec)

    def prepare_create(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        if isinstance(spec, dict) and spec.get(ephemeralcontainers.FIELD):
            # Added only through pods/ephemeralcontainers, to a pod that exists.
            errs = FieldErrors()
            errs.forbidden(f"spec.{ephemeralcontainers.FIELD}", "cannot be set on create")
            errs.raise_if_any("Pod", str((obj.get("metadata") or {}).get("name") or ""))
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}

    def prepare_subresource(self, subresource: str, new: Obj, old: Obj) -> Obj:
        # The binding handler sets spec.nodeName and PodScheduled itself, nothing else.
        if subresource == "binding":
            return new
        if subresource == ephemeralcontainers.SUBRESOURCE:
            out = ephemeralcontainers.apply_update(new, old)
            self.default(out)
            errs = FieldErrors()
            Strategy.validate(self, out, errs, True)
            validate_pod_spec(errs, "spec", out.get("spec"))
            ephemeralcontainers.validate_update(errs, out, old)
            errs.raise_if_any("Pod", str(old["metadata"].get("name") or ""))
            return out
        return super().prepare_subresource(subresource, new, old)

    def prepare_status_update(self, new: Obj, old: Obj) -> Obj:
        out = super().prepare_status_update(new, old)
        status = out.get("status") or {}
        # The scheduler's nominatedNodeName and the kubelet's status may change; the QoS
        # class is the API server's to say.
        if "qosClass" in (old.get("status") or {}):
            status["qosClass"] = old["status"]["qosClass"]
        return out

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        validate_pod_spec(errs, "spec", obj.get("spec"))

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        changed = {k for k in set(ns) | set(os_) if ns.get(k) != os_.get(k)}
        changed -= _MUTABLE_POD_SPEC
        if "containers" in changed and _only_images_changed(ns, os_, "containers"):
            changed.discard("containers")
        if "initContainers" in changed and _only_images_changed(ns, os_, "initContainers"):
            changed.discard("initContainers")
        if changed:
            errs.forbidden(
                "spec",
                "pod updates may not change fields other than "
                "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                "existing tolerations),`spec.terminationGracePeriodSeconds` (allow "
                "it to be set to 1 if it was previously negative)",
            )


def _only_images_changed(new: Obj, old: Obj, group: str) -> bool:
    a, b = new.get(group) or [], old.get(group) or []
    if len(a) != len(b):
        return False
    strip = [
        ({k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c) for c in a
    ]
    strip_old = [
        ({k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c) for c in b
    ]
    return strip == strip_old


# ------------------------------------------------------------ other kinds


@register("", "Namespace")
class NamespaceStrategy(Strategy):
    name_check = "label"

    def default(self, obj: Obj) -> None:
        # Upstream labels every namespace with its own name.
        name = obj.get("metadata", {}).get("name")
        if name:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name

    def prepare_create(self, obj: Obj) -> None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}

    def prepare_update(self, new: Obj, old: Obj) -> None:
        super().prepare_update(new, old)
        # spec.finalizers changes only through the finalize subresource.
        if "spec" in old:
            new["spec"] = meta.clone(old["spec"])

    def prepare_subresource(self, subresource: str, new: Obj, old: Obj) -> Obj:
        if subresource != "finalize":
            return super().prepare_subresource(subresource, new, old)
        out = meta.clone(old)
        finalizers = (new.get("spec") or {}).get("finalizers") or []
        out.setdefault("spec", {})["finalizers"] = list(finalizers)
        return out

    def blocks_removal(self, obj: Obj) -> bool:
        return bool((obj.get("spec") or {}).get("finalizers"))

    def check_delete(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if name in ("default", "kube-system", "kube-public"):
            raise errors.forbidden("namespaces", name, "", "this namespace may not be deleted")

    def on_delete(self, obj: Obj) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"


@register("", "Node")
class NodeStrategy(Strategy):
    reset_status_on_create = False

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec") or {}
        for i, t in enumerate(spec.get("taints") or ()):
            if not isinstance(t, dict) or not t.get("key"):
                errs.required(f"spec.taints[{i}].key")
            elif t.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                errs.not_supported(
                    f"spec.taints[{i}].effect",
                    t.get("effect"),
                    ["NoExecute", "NoSchedule", "PreferNoSchedule"],
                )


@register("", "Service")
class ServiceStrategy(Strategy):
    return_deleted_object = True

    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        # As upstream's defaults: no affinity config without affinity; ClientIP gets 3 h.
        if spec["sessionAffinity"] == "None":
            spec.pop("sessionAffinityConfig", None)
        elif spec["sessionAffinity"] == "ClientIP":
            config = spec.get("sessionAffinityConfig")
            client = config.get("clientIP") if isinstance(config, dict) else None
            if not isinstance(client, dict) or client.get("timeoutSeconds") is None:
                spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "targetPort" not in port and "port" in port:
                    port["targetPort"] = port["port"]

    def prepare_update(self, new: Obj, old: Obj) -> None:
        """Allocated values the client left out are kept, as upstream does."""
        super().prepare_update(new, old)
        spec, old_spec = new.get("spec"), old.get("spec") or {}
        if not isinstance(spec, dict):
            return
        _drop_type_dependent_fields(spec, old_spec)
        if spec.get("type") == "ExternalName":
            return
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = old_spec.get("clusterIPs", [old_spec["clusterIP"]])
        for field in ("ipFamilies", "ipFamilyPolicy"):
            if field in old_spec:
                spec.setdefault(field, old_spec[field])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            held = {
                (p.get("port"), p.get("protocol")): p.get("nodePort")
                for p in old_spec.get("ports") or ()
            }
            for port in spec.get("ports") or ():
                kept = held.get((port.get("port"), port.get("protocol")))
                if isinstance(port, dict) and not port.get("nodePort") and kept:
                    port["nodePort"] = kept

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        name = obj.get("metadata", {}).get("name")
        if isinstance(name, str) and name and not _DNS1035_RE.match(name):
            errs.invalid("metadata.name", name, DNS1035_MSG)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
        if spec.get("type") not in types:
            errs.not_supported("spec.type", spec.get("type"), types)
        if spec.get("sessionAffinity") not in ("None", "ClientIP"):
            errs.not_supported(
                "spec.sessionAffinity", spec.get("sessionAffinity"), ["ClientIP", "None"]
            )
        ports = spec.get("ports") or []
        if not ports and spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
            errs.required("spec.ports")
        names: set[str] = set()
        seen_ports: set[tuple[Any, Any]] = set()
        seen_node_ports: set[tuple[Any, Any]] = set()
        for i, port in enumerate(ports):
            p = f"spec.ports[{i}]"
            if not isinstance(port, dict):
                errs.invalid(p, port, "must be an object")
                continue
            key = (port.get("port"), port.get("protocol"))
            if key in seen_ports:
                errs.duplicate(p, _GoServicePort(port.get("protocol"), port.get("port")))
            seen_ports.add(key)
            node_key = (port.get("nodePort"), port.get("protocol"))
            if port.get("nodePort"):
                if node_key in seen_node_ports:
                    errs.duplicate(f"{p}.nodePort", port["nodePort"])
                seen_node_ports.add(node_key)
                if spec.get("type") == "ClusterIP":
                    errs.forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'")
            name = port.get("name") or ""
            if len(ports) > 1 and not name:
                errs.required(f"{p}.name")
            elif name:
                check_dns_label(errs, f"{p}.name", name)
                if name in names:
                    errs.duplicate(f"{p}.name", name)
                names.add(name)
            check_port_number(errs, f"{p}.port", port.get("port"))
            if port.get("protocol") not in PROTOCOLS:
                errs.not_supported(f"{p}.protocol", port.get("protocol"), PROTOCOLS)
            if "targetPort" in port:
                check_int_or_port_name(errs, f"{p}.targetPort", port["targetPort"])
            if port.get("nodePort") not in (None, 0):
                check_port_number(errs, f"{p}.nodePort", port["nodePort"])
        check_labels(errs, "spec.selector", spec.get("selector"))
        if spec.get("type") in ("NodePort", "LoadBalancer") and spec.get("clusterIP") == "None":
            errs.invalid(
                "spec.clusterIPs[0]",
                "None",
                f"may not be set to 'None' for {spec['type']} services",
            )
        if spec.get("sessionAffinity") == "ClientIP":
            timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
                "timeoutSeconds"
            )
            if not isinstance(timeout, int) or not 0 < timeout <= 86400:
                errs.invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    "must be greater than 0 and less than 86400",
                )

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_ip = (new.get("spec") or {}).get("clusterIP")
        if old_ip and new_ip != old_ip and (new.get("spec") or {}).get("type") != "ExternalName":
            errs.immutable("spec.clusterIPs[0]", new_ip or "")


class _GoServicePort:
    """Renders like upstream's %#v of the core.ServicePort key in its duplicate-port error."""

    def __init__(self, protocol: Any, port: Any) -> None:
        self.protocol, self.port = protocol, port

    def __str__(self) -> str:
        return (
            f'core.ServicePort{{Name:"", Protocol:"{self.protocol}", '
            f"AppProtocol:(*string)(nil), Port:{self.port}, "
            'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
        )


def _drop_type_dependent_fields(spec: Obj, old_spec: Obj) -> None:
    """Changing only the type lets go of what the old type had allocated, as upstream does:
    node ports when leaving NodePort/LoadBalancer, the cluster IP when becoming ExternalName.
    Values the client changed itself are left for validation to judge."""
    node_port_types = ("NodePort", "LoadBalancer")
    if old_spec.get("type") in node_port_types and spec.get("type") not in node_port_types:
        held = {
            (p.get("port"), p.get("protocol")): p.get("nodePort")
            for p in old_spec.get("ports") or ()
            if isinstance(p, dict)
        }
        for port in spec.get("ports") or ():
            if (
                isinstance(port, dict)
                and port.get("nodePort")
                and held.get((port.get("port"), port.get("protocol"))) == port["nodePort"]
            ):
                del port["nodePort"]
    if (
        spec.get("type") == "ExternalName"
        and old_spec.get("type") != "ExternalName"
        and spec.get("clusterIP") == old_spec.get("clusterIP")
    ):
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(field, None)


@register("", "Endpoints")
class EndpointsStrategy(Strategy):
    allow_create_on_update = True

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        for i, subset in enumerate(obj.get("subsets") or ()):
            for j, port in enumerate((subset or {}).get("ports") or ()):
                check_port_number(errs, f"subsets[{i}].ports[{j}].port", (port or {}).get("port"))


def _check_immutable_data(new: Obj, old: Obj, errs: FieldErrors) -> None:
    if old.get("immutable"):
        for field in ("data", "binaryData", "stringData"):
            if new.get(field) != old.get(field):
                errs.forbidden(field, "field is immutable when `immutable` is set")
        if not new.get("immutable"):
            errs.forbidden("immutable", "field is immutable when `immutable` is set")


# What a ConfigMap's or Secret's data may hold in all (upstream's MaxSecretSize, 1 MiB).
MAX_DATA_SIZE = 1 << 20


@register("", "ConfigMap")
class ConfigMapStrategy(Strategy):
    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
        for key, value in data.items():
            check_config_key(errs, "data", key)
            if not isinstance(value, str):
                errs.invalid(f"data[{key}]", value, "must be a string")
        for key, value in binary.items():
            check_config_key(errs, "binaryData", key)
            if key in data:
                errs.invalid("binaryData", key, "duplicate of key present in data")
            _check_base64(errs, f"binaryData[{key}]", value)
        size = sum(len(v.encode()) for v in data.values() if isinstance(v, str))
        size += sum(_decoded_size(v) for v in binary.values())
        if size > MAX_DATA_SIZE:
            errs.too_long("[]", MAX_DATA_SIZE)  # upstream's path for the whole object

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        _check_immutable_data(new, old, errs)


def _decoded_size(value: Any) -> int:
    """The bytes a base64 value holds, without decoding it."""
    if not isinstance(value, str):
        return 0
    return len(value) * 3 // 4 - value[-2:].count("=")


def _check_base64(errs: FieldErrors, path: str, value: Any) -> None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        errs.invalid(path, "<secret contents redacted>", "illegal base64 data at input byte 0")


@register("", "Secret")
class SecretStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        obj.setdefault("type", "Opaque")
        # stringData is write-only convenience: merged into data, never stored.
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                if isinstance(value, str):
                    data[key] = base64.b64encode(value.encode()).decode()

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        for key, value in (obj.get("data") or {}).items():
            check_config_key(errs, "data", key)
            _check_base64(errs, f"data[{key}]", value)
        if sum(_decoded_size(v) for v in (obj.get("data") or {}).values()) > MAX_DATA_SIZE:
            errs.too_long("data", MAX_DATA_SIZE)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate_update(new, old, errs, namespaced)
        if new.get("type") != old.get("type"):
            errs.immutable("type", new.get("type"))
        _check_immutable_data(new, old, errs)


@register("", "Event")
class EventStrategy(Strategy):
    allow_create_on_update = True

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        involved = obj.get("involvedObject")
        if not isinstance(involved, dict):
            errs.required("involvedObject")
            return
        ns = obj.get("metadata", {}).get("namespace")
        if involved.get("namespace") and involved["namespace"] != ns:
            errs.invalid(
                "involvedObject.namespace", involved["namespace"], "does not match event.namespace"
            )


@register("", "ServiceAccount")
class ServiceAccountStrategy(Strategy):
    pass
