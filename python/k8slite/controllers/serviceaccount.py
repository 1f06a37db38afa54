"""The serviceaccount controller: a `default` ServiceAccount in every active namespace."""

from __future__ import annotations

from k8slite.client import DeletedFinalStateUnknown
from k8slite.client.resource import NAMESPACES, SERVICEACCOUNTS
from k8slite.component.objects import Obj, is_deleting, name_of, namespace_of
from k8slite.controllers.base import Controller, ControllerContext
from k8slite.controllers.replicaset import create_if_absent

# The accounts upstream makes in each namespace.
ACCOUNTS = ("default",)


class ServiceAccountsController(Controller):
    name = "serviceaccount-controller"
    queue_name = "serviceaccount"
    event_source = "service-account-controller"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.accounts = ctx.informers.informer(SERVICEACCOUNTS)
        self.namespaces.add_event_handler(
            self._namespace, lambda _old, new: self._namespace(new), None
        )
        self.accounts.add_event_handler(None, None, self._account_deleted)

    def _namespace(self, ns: Obj) -> None:
        self.queue.add(name_of(ns))

    def _account_deleted(self, account: Obj | DeletedFinalStateUnknown) -> None:
        obj = account.obj if isinstance(account, DeletedFinalStateUnknown) else account
        if name_of(obj) in ACCOUNTS:
            self.queue.add(namespace_of(obj) or "")

    async def sync(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if (
            ns is None
            or is_deleting(ns)
            or (ns.get("status") or {}).get("phase")
            not in (
                None,
                "Active",
            )
        ):
            return None
        for name in ACCOUNTS:
            if self.accounts.get(name, key) is not None:
                continue
            body = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": key},
            }
            await create_if_absent(self.client, SERVICEACCOUNTS, body, key)
        return None
