"""node-ipam-controller (--allocate-node-cidrs): upstream's RangeAllocator.

Every Node gets spec.podCIDR and spec.podCIDRs, one subnet of each --cluster-cidr (IPv4
and/or IPv6, of --node-cidr-mask-size[-ipv4|-ipv6] bits), no two nodes the same. The
subnets of the nodes that exist are marked taken before any is handed out, so a restarted
(or newly elected) manager never gives out one in use; a deleted node's subnets go back to
the range. When a range is full the node gets none and a CIDRNotAvailable event.
"""

from __future__ import annotations

import ipaddress
import logging

from k8slite.client import DeletedFinalStateUnknown, NotFound
from k8slite.client.resource import NODES
from k8slite.component.objects import Obj, name_of
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.cidrset import CIDRRangeFull, CIDRSet, Network, parse_cluster_cidrs

log = logging.getLogger(__name__)

# How soon a node left without a subnet (full range) is tried again.
RETRY_FULL = 10.0


def pod_cidrs(node: Obj) -> list[Network]:
    spec = node.get("spec") or {}
    texts = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            log.warning("node %s has an unparsable podCIDR %r", name_of(node), text)
    return out


class NodeIPAMController(Controller):
    name = "node-ipam-controller"
    queue_name = "node_ipam"
    event_source = "cidrAllocator"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        # One worker: allocation and the patch that records it are not interleaved.
        super().__init__(ctx, 1)
        opts = ctx.options
        self.sets = [
            CIDRSet(
                net,
                opts.node_cidr_mask_size_ipv4
                if net.version == 4
                else opts.node_cidr_mask_size_ipv6,
            )
            for net in parse_cluster_cidrs(opts.cluster_cidr)
        ]
        self.nodes = ctx.informers.informer(NODES)
        self.nodes.add_event_handler(
            self.enqueue, lambda _old, new: self.enqueue(new), self._deleted
        )

    def after_sync(self) -> None:
        # Restart safety: what existing nodes hold is taken before anything is handed out.
        for node in self.nodes.list():
            self._occupy(node)

    def _occupy(self, node: Obj) -> None:
        for net in pod_cidrs(node):
            for cidrs in self.sets:
                if cidrs.contains(net):
                    cidrs.occupy(net)

    def _deleted(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        node = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        freed = pod_cidrs(node)
        for net in freed:
            for cidrs in self.sets:
                cidrs.release(net)
        if freed:
            # Nodes waiting for a range need not wait for their retry.
            for waiting in self.nodes.list():
                if not pod_cidrs(waiting):
                    self.enqueue(waiting)

    async def sync(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            return None
        held = pod_cidrs(node)
        if held:
            # Set by someone (a kubelet's --pod-cidr, an earlier run): keep it taken.
            self._occupy(node)
            return None
        taken: list[tuple[CIDRSet, Network]] = []
        try:
            for cidrs in self.sets:
                taken.append((cidrs, cidrs.allocate_next()))
        except CIDRRangeFull:
            for cidrs, net in taken:
                cidrs.release(net)
            self.recorder.event(
                node, "Normal", "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable"
            )
            return RETRY_FULL
        texts = [str(net) for _, net in taken]
        patch = {"spec": {"podCIDR": texts[0], "podCIDRs": texts}}
        try:
            await self.client.patch(NODES, key, patch, patch_type="merge")
        except NotFound:
            for cidrs, net in taken:
                cidrs.release(net)
            return None
        except Exception:
            for cidrs, net in taken:
                cidrs.release(net)
            raise
        log.info("node %s: podCIDRs %s", key, ", ".join(texts))
        return None
