"""VolumeBinding and VolumeRestrictions: what a pod's claims require of its node.

A claim bound to a volume with node affinity confines the pod to the volume's nodes; an
unbound claim of a WaitForFirstConsumer class is bound after the pod is placed: the
scheduler names the chosen node on the claim (volume.kubernetes.io/selected-node) and the
PV controller (or the class's provisioner) binds it. Node constraints reach the kernel as
extra required node-affinity terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from k8slite.api.storage_v1 import SELECTED_NODE
from k8slite.client.informer import SharedInformer
from k8slite.component.objects import Obj, annotations_of, is_deleting, name_of, namespace_of
from k8slite.controllers.persistentvolume import NO_PROVISIONER, WAIT_FOR_FIRST_CONSUMER
from k8slite.controllers.volumematch import claim_class, find_best_match, volume_terms
from k8slite.controllers.volumeprotection import claims_of

FILTER_NAME = "VolumeBinding"
RWOP_CONFLICT = (
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"
)
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_VOLUMES = "node(s) didn't find available persistent volumes to bind"


@dataclass
class VolumeCheck:
    """A pod's volume verdict: why it cannot go anywhere, or the node-selector term lists
    (each ORed within, all ANDed) it must satisfy, and the claims to name the node on."""

    error: str | None = None
    terms: list[list[Obj]] = field(default_factory=list)
    select: list[Obj] = field(default_factory=list)


def _node_name_term(node: str) -> Obj:
    return {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}


class VolumeBinding:
    def __init__(
        self,
        claims: SharedInformer,
        volumes: SharedInformer,
        classes: SharedInformer,
        pods: SharedInformer,
    ) -> None:
        self.claims = claims
        self.volumes = volumes
        self.classes = classes
        self.pods = pods

    def check(self, pod: Obj) -> VolumeCheck:
        out = VolumeCheck()
        names = claims_of(pod)
        if not names:
            return out
        namespace = namespace_of(pod)
        for name in names:
            claim = self.claims.get(name, namespace)
            if claim is None:
                out.error = f'persistentvolumeclaim "{name}" not found'
                return out
            if is_deleting(claim):
                out.error = f'persistentvolumeclaim "{name}" is being deleted'
                return out
            modes = (claim.get("spec") or {}).get("accessModes") or ()
            if "ReadWriteOncePod" in modes and self._claim_in_use_elsewhere(pod, name):
                out.error = RWOP_CONFLICT
                return out
            error = self._claim_terms(claim, out)
            if error:
                out.error = error
                return out
        return out

    def _claim_in_use_elsewhere(self, pod: Obj, claim: str) -> bool:
        for other in self.pods.list(namespace_of(pod)):
            if name_of(other) == name_of(pod) or not (other.get("spec") or {}).get("nodeName"):
                continue
            if (other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if claim in claims_of(other):
                return True
        return False

    def _claim_terms(self, claim: Obj, out: VolumeCheck) -> str | None:
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if volume_name:
            pv = self.volumes.get(volume_name)
            terms = volume_terms(pv) if pv is not None else None
            if terms is not None:
                out.terms.append(terms)
            return None
        sc = self.classes.get(claim_class(claim)) if claim_class(claim) else None
        if sc is None or sc.get("volumeBindingMode") != WAIT_FOR_FIRST_CONSUMER:
            return UNBOUND_IMMEDIATE
        selected = annotations_of(claim).get(SELECTED_NODE)
        if selected:
            out.terms.append([_node_name_term(selected)])
            return None
        if sc.get("provisioner") != NO_PROVISIONER:
            out.select.append(claim)  # provisioned wherever the pod goes
            return None
        # Only pre-made volumes: the pod goes where one of them can be used.
        fitting = [pv for pv in self.volumes.list() if find_best_match(claim, [pv]) is pv]
        if not fitting:
            return NO_VOLUMES
        options: list[Obj] = []
        for pv in fitting:
            terms = volume_terms(pv)
            if terms is None:
                options = []
                break
            options.extend(terms)
        if options:
            out.terms.append(options)
        out.select.append(claim)
        return None
