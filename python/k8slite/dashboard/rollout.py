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

import datetime

from k8slite.client import ApiClient
from k8slite.client.resource import DAEMONSETS, DEPLOYMENTS, REPLICASETS, STATEFULSETS, Resource
from k8slite.component.objects import controller_ref
from k8slite.controllers.deploymentutil import (
    SKIP_COPY,
    equal_ignore_hash,
    revision_of,
    without_hash,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTARTABLE: dict[str, Resource] = {
    "deployments": DEPLOYMENTS,
    "statefulsets": STATEFULSETS,
    "daemonsets": DAEMONSETS,
}


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
        if (controller_ref(rs) or {}).get("uid") == uid and revision_of(rs) > 0
    ]
    current = revision_of(deployment)
    older = [rs for rs in owned if revision_of(rs) < current] if current else []
    if not older:
        raise RolloutRefused(f'no rollout history found for deployment "{name}"')
    previous = max(older, key=revision_of)
    template = without_hash((previous.get("spec") or {}).get("template") or {})
    if equal_ignore_hash(template, (deployment.get("spec") or {}).get("template") or {}):
        revision = revision_of(previous)
        return (
            f"deployment.apps/{name} skipped rollback "
            f"(current template already matches revision {revision})"
        )
    annotations = dict((deployment.get("metadata") or {}).get("annotations") or {})
    for key, value in ((previous.get("metadata") or {}).get("annotations") or {}).items():
        # The annotations kubectl does not copy back: the controller's own (and kubectl's).
        if key not in SKIP_COPY:
            annotations[key] = value
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    await client.patch(DEPLOYMENTS, name, patch, namespace=namespace, patch_type="json")
    return f"deployment.apps/{name} rolled back"
