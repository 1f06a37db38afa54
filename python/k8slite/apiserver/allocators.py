"""Service ClusterIP and NodePort allocation, persisted as one storage key per claim.

Like upstream's IPAddress objects: a service's address or node port is claimed by creating
its key in the same transaction that stores the service, so two services can never hold the
same one (create is compare-and-swap), claims survive restarts, and deleting the service
deletes its claims in the same transaction.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable

from k8slite._native import dumps
from k8slite.api import errors
from k8slite.component.objects import Obj
from k8slite.storage import Event, Op, Store

IP_PREFIX = "/registry/networking.k8s.io/ipaddresses/"
PORT_PREFIX = "/registry/k8slite/servicenodeports/"
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _claim(key: str, obj: Obj) -> Op:
    m = obj["metadata"]
    owner = {"resource": "services", "namespace": m.get("namespace"), "name": m["name"]}
    body = dumps({"parentRef": owner})
    return Op("create", key, lambda rv: body)


def _release(key: str) -> Op:
    return Op("delete", key, lambda rv: b"{}")


def _invalid(name: str, field: str, value: str, detail: str) -> errors.ApiError:
    return errors.invalid(
        "Service",
        name,
        [
            {
                "reason": "FieldValueInvalid",
                "field": field,
                "message": f"Invalid value: {value}: {detail}",
            }
        ],
    )


class ServiceAllocator:
    """Assigns spec.clusterIP(s) and nodePorts on create and update, releases on removal."""

    def __init__(
        self, store: Store, cidr: str = "10.96.0.0/12", node_ports: tuple[int, int] = (30000, 32767)
    ) -> None:
        self.store = store
        self.network = ipaddress.ip_network(cidr)
        self.node_ports = node_ports
        self.ips: set[str] = set()
        self.ports: set[int] = set()

    @property
    def kubernetes_ip(self) -> str:
        """The range's first address belongs to the `kubernetes` service, as upstream."""
        return str(self.network.network_address + 1)

    def warm(self) -> None:
        for key, _, _ in self.store.scan(IP_PREFIX):
            self.ips.add(key[len(IP_PREFIX) :])
        for key, _, _ in self.store.scan(PORT_PREFIX):
            self.ports.add(int(key[len(PORT_PREFIX) :]))
        self.store.subscribe(self._on_commit)

    def _on_commit(self, events: list[Event]) -> None:
        for ev in events:
            if ev.key.startswith(IP_PREFIX):
                ip = ev.key[len(IP_PREFIX) :]
                (self.ips.discard if ev.type == "DELETED" else self.ips.add)(ip)
            elif ev.key.startswith(PORT_PREFIX):
                port = int(ev.key[len(PORT_PREFIX) :])
                (self.ports.discard if ev.type == "DELETED" else self.ports.add)(port)

    # --------------------------------------------------------------- picking

    def _pick_ip(self) -> str:
        size = self.network.num_addresses
        if len(self.ips) >= size - 3:
            raise errors.ApiError(
                500,
                "InternalError",
                "Internal error occurred: failed to allocate a serviceIP: range is full",
            )
        while True:  # the range is mostly free, so a random probe finds a hole fast
            ip = str(self.network.network_address + random.randrange(2, size - 1))
            if ip not in self.ips:
                return ip

    def _pick_port(self, taken: set[int]) -> int:
        low, high = self.node_ports
        if len(self.ports) + len(taken) > high - low:
            raise errors.ApiError(
                500,
                "InternalError",
                "Internal error occurred: failed to allocate a nodePort: range is full",
            )
        while True:
            port = random.randint(low, high)
            if port not in self.ports and port not in taken:
                return port

    def _check_ip(self, name: str, ip: str) -> None:
        quoted = f'[]string{{"{ip}"}}'
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise _invalid(
                name,
                "spec.clusterIPs[0]",
                f'"{ip}"',
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ) from None
        if addr not in self.network:
            raise _invalid(
                name,
                "spec.clusterIPs",
                quoted,
                f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the "
                f"valid range. The range of valid IPs is {self.network}",
            )
        if ip in self.ips:
            raise _invalid(
                name,
                "spec.clusterIPs",
                quoted,
                f"failed to allocate IP {ip}: provided IP is already allocated",
            )

    def _check_port(self, name: str, i: int, port: int) -> None:
        low, high = self.node_ports
        if not low <= port <= high:
            raise _invalid(
                name,
                f"spec.ports[{i}].nodePort",
                str(port),
                f"provided port is not in the valid range. The range of valid "
                f"ports is {low}-{high}",
            )
        if port in self.ports:
            raise _invalid(
                name, f"spec.ports[{i}].nodePort", str(port), "provided port is already allocated"
            )

    # ------------------------------------------------------------ registry hooks

    def on_create(self, obj: Obj) -> list[Op]:
        spec = obj.setdefault("spec", {})
        ops = self._cluster_ip_ops(obj) if spec.get("type") != "ExternalName" else []
        ops.extend(self._node_port_ops(obj, set()))
        return ops

    def _cluster_ip_ops(self, obj: Obj) -> list[Op]:
        """Honour or pick the service's cluster IP and claim it (headless claims nothing)."""
        spec = obj["spec"]
        ops: list[Op] = []
        ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if ip == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
        else:
            if ip:
                self._check_ip(obj["metadata"]["name"], ip)
            else:
                ip = self._pick_ip()
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            ops.append(_claim(IP_PREFIX + ip, obj))
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        return ops

    def _node_port_ops(self, obj: Obj, held: set[int]) -> list[Op]:
        """Claim node ports the service needs and does not hold yet."""
        spec = obj["spec"]
        if spec.get("type") not in _NODE_PORT_TYPES:
            for port in spec.get("ports") or ():
                port.pop("nodePort", None)
            return []
        ops: list[Op] = []
        claimed: set[int] = set()
        for i, port in enumerate(spec.get("ports") or ()):
            wanted = port.get("nodePort")
            if wanted in held or wanted in claimed:
                continue  # held already, or shared by a TCP/UDP pair of one port
            if wanted:
                self._check_port(obj["metadata"]["name"], i, wanted)
            else:
                wanted = port["nodePort"] = self._pick_port(claimed)
            claimed.add(wanted)
            ops.append(_claim(f"{PORT_PREFIX}{wanted}", obj))
        return ops

    def on_update(self, new: Obj, old: Obj) -> list[Op]:
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        held = set(self.node_ports_of(old))
        ops = self._node_port_ops(new, held)
        for port in held - set(self.node_ports_of(new)):
            ops.append(_release(f"{PORT_PREFIX}{port}"))
        old_ip, new_ip = old_spec.get("clusterIP"), spec.get("clusterIP")
        if old_ip and old_ip != "None" and new_ip != old_ip:
            ops.append(_release(IP_PREFIX + old_ip))  # ExternalName conversion gives it up
        if not old_ip and spec.get("type") != "ExternalName":
            ops.extend(self._cluster_ip_ops(new))  # an ExternalName service becoming proxied
        return ops

    @staticmethod
    def node_ports_of(obj: Obj) -> Iterable[int]:
        return {
            p["nodePort"] for p in (obj.get("spec") or {}).get("ports") or () if p.get("nodePort")
        }

    def on_remove(self, obj: Obj) -> list[Op]:
        spec = obj.get("spec") or {}
        ops = [_release(f"{PORT_PREFIX}{port}") for port in self.node_ports_of(obj)]
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            ops.append(_release(IP_PREFIX + ip))
        return ops
