"""Upstream's ServiceAccount admission plugin, for pods being created.

The pod runs as spec.serviceAccountName (default "default"; the deprecated serviceAccount
field mirrors it), which must exist (403 otherwise). Unless automountServiceAccountToken is
false on the pod, or on the account while the pod does not say, every container and init
container mounts a projected `kube-api-access-<5>` volume (a bound token, the cluster CA
from the kube-root-ca.crt ConfigMap, the namespace) at
/var/run/secrets/kubernetes.io/serviceaccount. The account's imagePullSecrets are copied
to a pod that names none.
"""

from __future__ import annotations

import secrets

import trio

from k8slite.api import errors
from k8slite.apiserver.core import ApiCore
from k8slite.component.objects import Obj

DEFAULT_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
TOKEN_EXPIRATION = 3607
# Upstream looks the default account up 10 times, 100-200 ms apart, since its controller
# may not have made it yet in a namespace just created; other accounts are looked up once.
DEFAULT_ACCOUNT_WAIT = 2.0
# upstream's utilrand.String alphabet: no vowels, no confusable digits.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def token_volume(name: str) -> Obj:
    """The projected volume every pod gets: token, cluster CA, namespace."""
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {
                    "configMap": {
                        "name": ROOT_CA_CONFIGMAP,
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": 0o644,
        },
    }


class ServiceAccountAdmission:
    """Mutates and checks pods on create, reading accounts from the API server's cache."""

    def __init__(self, core: ApiCore) -> None:
        self.accounts = core.registries[("", "serviceaccounts")]

    async def admit(self, namespace: str | None, pod: Obj) -> None:
        if not isinstance(pod.get("spec"), dict) or namespace is None:
            return  # validation refuses it later, with upstream's message
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if MIRROR_ANNOTATION in annotations:
            # Mirror pods of static pods carry no API credentials, as upstream.
            return
        spec = pod["spec"]
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_ACCOUNT
        if not isinstance(name, str):
            return  # not a name at all: validation refuses the pod
        spec["serviceAccountName"] = spec["serviceAccount"] = name
        account = await self._lookup(namespace, name)
        if account is None:
            raise errors.forbidden(
                "pods",
                str((pod.get("metadata") or {}).get("name") or ""),
                "",
                f"error looking up service account {namespace}/{name}: "
                f'serviceaccount "{name}" not found',
            )
        if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [
                {"name": s.get("name", "")} for s in account["imagePullSecrets"]
            ]
        if _automount(account, spec):
            _mount_token(spec)

    async def _lookup(self, namespace: str, name: str) -> Obj | None:
        key = self.accounts.key(namespace, name)
        wait = DEFAULT_ACCOUNT_WAIT if name == DEFAULT_ACCOUNT else 0.0
        with trio.move_on_after(wait):
            while self.accounts.cache.get(key) is None:
                await self.accounts.changed.wait()
        try:
            return self.accounts.get(namespace, name)
        except errors.ApiError:
            return None


def _automount(account: Obj, spec: Obj) -> bool:
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    return account.get("automountServiceAccountToken") is not False


def _mount_token(spec: Obj) -> None:
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list):
        return  # malformed: validation refuses the pod
    existing = next(
        (
            v.get("name")
            for v in volumes
            if isinstance(v, dict) and str(v.get("name") or "").startswith(VOLUME_PREFIX)
        ),
        None,
    )
    volume_name = existing or VOLUME_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(5))
    needed = False
    for group in ("initContainers", "containers"):
        containers = spec.get(group) or []
        for container in containers if isinstance(containers, list) else ():
            if not isinstance(container, dict):
                continue
            mounts = container.get("volumeMounts") or []
            if not isinstance(mounts, list):
                continue
            if any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue  # the user's own mount there wins, as upstream
            container["volumeMounts"] = [
                *mounts,
                {"name": volume_name, "readOnly": True, "mountPath": MOUNT_PATH},
            ]
            needed = True
    if needed and existing is None:
        spec["volumes"] = [*volumes, token_volume(volume_name)]
