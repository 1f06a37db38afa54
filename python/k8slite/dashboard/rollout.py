"""`kubectl rollout restart` and `kubectl rollout undo`, done as kubectl does them, with the
user's credentials.

Restart patches spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]
with the time (a strategic merge patch), so the controller rolls out a new template.
Undo, for a Deployment, finds the ReplicaSet of the previous revision (the highest revision
below the Deployment's own) and puts its template back (the pod-template-hash label
dropped) with a JSON patch that also copies the ReplicaSet's annotations, as kubectl's
DeploymentRollbacker does; its refusals use kubectl's words.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

from k8slite.client import ApiClient
from k8slite.client.resource import DAEMONSETS, DEPLOYMENTS, REPLICASETS, STATEFULSETS, Resource
from k8slite.component.objects import controller_ref

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
RESTARTABLE: dict[str, Resource] = {
    "deployments": DEPLOYMENTS,
    "statefulsets": STATEFULSETS,
    "daemonsets": DAEMONSETS,
}
# ReplicaSet annotations kubectl does not copy onto the Deployment on a rollback.
_SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


class RolloutRefused(Exception):
    """kubectl's message for a rollout it will not do."""


async def restart(client: ApiClient, kind: str, namespace: str, name: str) -> str:
    res = RESTARTABLE.get(kind)
    if res is None:
        raise RolloutRefused(f"restarting {kind} is not supported")
    current = await client.get(res, name, namespace=namespace)
    if (current.get("spec") or {}).get("paused"):
        raise RolloutRefused("can't restart paused deployment (run rollout resume first)")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    await client.patch(res, name, patch, namespace=namespace, patch_type="strategic")
    return f"{kind.rstrip('s')}.apps/{name} restarted"


def _revision(obj: dict[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(TEMPLATE_HASH, None)
    return template


async def undo(client: ApiClient, kind: str, namespace: str, name: str) -> str:
    if kind != "deployments":
        raise RolloutRefused(f"undo of {kind} is not supported here (Deployments only)")
    deployment = await client.get(DEPLOYMENTS, name, namespace=namespace)
    if (deployment.get("spec") or {}).get("paused"):
        raise RolloutRefused(
            f"you cannot rollback a paused deployment; resume it first with 'kubectl rollout "
            f"resume deployment/{name}' and try again"
        )
    uid = (deployment.get("metadata") or {}).get("uid")
    listed = await client.list(REPLICASETS, namespace=namespace)
    owned = [
        rs
        for rs in listed.get("items") or ()
        if (controller_ref(rs) or {}).get("uid") == uid and _revision(rs) > 0
    ]
    current = _revision(deployment)
    older = [rs for rs in owned if _revision(rs) < current] if current else []
    if not older:
        raise RolloutRefused(f'no rollout history found for deployment "{name}"')
    previous = max(older, key=_revision)
    template = _template_without_hash((previous.get("spec") or {}).get("template") or {})
    if template == _template_without_hash((deployment.get("spec") or {}).get("template") or {}):
        revision = _revision(previous)
        return (
            f"deployment.apps/{name} skipped rollback "
            f"(current template already matches revision {revision})"
        )
    annotations = dict((deployment.get("metadata") or {}).get("annotations") or {})
    for key, value in ((previous.get("metadata") or {}).get("annotations") or {}).items():
        if key not in _SKIPPED_ANNOTATIONS:
            annotations[key] = value
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    await client.patch(DEPLOYMENTS, name, patch, namespace=namespace, patch_type="json")
    return f"deployment.apps/{name} rolled back"
