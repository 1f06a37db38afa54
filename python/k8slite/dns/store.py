"""The record store: every cluster record by name and type, kept in step by the watcher.

Records are grouped by owner (a Service) so a change replaces exactly what its owner
stood for. Every real change tells the listeners (the answer cache) which names it
touched: the records' names and their ancestors, whose existence may have changed too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.rdata

from k8slite.dns.records import Record, absolute

RdataByType = dict[int, list[dns.rdata.Rdata]]
# Called with the names a change touched, or None when it may have touched any.
Listener = Callable[[set[str] | None], None]


class RecordStore:
    def __init__(self, zone: str) -> None:
        self.zone = absolute(zone)
        self.listeners: list[Listener] = []
        # Unix time of the last change: the SOA serial, as CoreDNS's.
        self.modified = int(time.time())
        self._owned: dict[str, list[Record]] = {}
        self._names: dict[str, RdataByType] = {}
        # Names that exist (NODATA, not NXDOMAIN): record names and their ancestors up to
        # the zone (empty non-terminals, as `_tcp.<service>...`), counted.
        self._exists: dict[str, int] = {}
        self._namespaces: set[str] = set()
        # namespace -> pod IP -> how many pods have it (verified pod records).
        self._pod_ips: dict[str, dict[str, int]] = {}
        self._pods: dict[str, tuple[str, tuple[str, ...]]] = {}

    def _changed(self, names: set[str] | None) -> None:
        self.modified = int(time.time())
        for listener in self.listeners:
            listener(names)

    def pod_zone(self, namespace: str) -> str:
        """<namespace>.pod.<zone>: what a change to the namespace's pod IPs touches."""
        return f"{namespace}.pod.{self.zone}"

    # ------------------------------------------------------------------ records

    def set_records(self, owner: str, records: list[Record]) -> None:
        """Replace what `owner` stands for (no records: forget it)."""
        old = self._owned.get(owner, [])
        if old == records:
            return  # a status-only update, or a resync: nothing to invalidate
        touched: set[str] = set()
        for rec in old:
            self._remove(rec)
            touched.update(self._lineage(rec.name))
        for rec in records:
            self._add(rec)
            touched.update(self._lineage(rec.name))
        if records:
            self._owned[owner] = records
        else:
            self._owned.pop(owner, None)
        self._changed(touched)

    def _add(self, rec: Record) -> None:
        self._names.setdefault(rec.name, {}).setdefault(rec.rdtype, []).append(rec.rdata)
        for name in self._lineage(rec.name):
            self._exists[name] = self._exists.get(name, 0) + 1

    def _remove(self, rec: Record) -> None:
        by_type = self._names[rec.name]
        rdatas = by_type[rec.rdtype]
        rdatas.remove(rec.rdata)
        if not rdatas:
            del by_type[rec.rdtype]
            if not by_type:
                del self._names[rec.name]
        for name in self._lineage(rec.name):
            count = self._exists[name] - 1
            if count:
                self._exists[name] = count
            else:
                del self._exists[name]

    def _lineage(self, name: str) -> list[str]:
        """`name` and its ancestors strictly below the zone (just `name` outside it)."""
        if not name.endswith("." + self.zone):
            return [name]
        out = []
        while name != self.zone:
            out.append(name)
            name = name.partition(".")[2]
        return out

    def lookup(self, name: str) -> RdataByType | None:
        return self._names.get(name)

    def exists(self, name: str) -> bool:
        return name in self._exists or name in self._names

    # --------------------------------------------------------------- namespaces

    def set_namespace(self, name: str, present: bool) -> None:
        name = name.lower()
        if present == (name in self._namespaces):
            return
        if present:
            self._namespaces.add(name)
        else:
            self._namespaces.discard(name)
        # Every name under the namespace, pods' included, may answer differently now.
        self._changed(None)

    def has_namespace(self, name: str) -> bool:
        return name in self._namespaces

    # --------------------------------------------------------------------- pods

    def set_pod(self, key: str, namespace: str, ips: tuple[str, ...]) -> None:
        """A pod's IPs (none: it is gone or has no IP yet)."""
        old = self._pods.get(key)
        new = (namespace.lower(), ips) if ips else None
        if old == new:
            return
        touched: set[str] = set()
        if old is not None:
            touched.add(self.pod_zone(old[0]))
            counts = self._pod_ips[old[0]]
            for ip in old[1]:
                counts[ip] -= 1
                if not counts[ip]:
                    del counts[ip]
            if not counts:
                del self._pod_ips[old[0]]
            del self._pods[key]
        if new is not None:
            touched.add(self.pod_zone(new[0]))
            counts = self._pod_ips.setdefault(new[0], {})
            for ip in new[1]:
                counts[ip] = counts.get(ip, 0) + 1
            self._pods[key] = new
        self._changed(touched)

    def has_pod_ip(self, namespace: str, ip: str) -> bool:
        return ip in self._pod_ips.get(namespace, {})

    @property
    def record_count(self) -> int:
        return sum(len(rs) for by_type in self._names.values() for rs in by_type.values())
