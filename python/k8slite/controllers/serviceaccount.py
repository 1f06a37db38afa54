"""The serviceaccount controller: a `default` ServiceAccount in every active namespace."""

from __future__ import annotations

from k8slite.client import AlreadyExists, ApiError, DeletedFinalStateUnknown
from k8slite.client.resource import NAMESPACES, SERVICEACCOUNTS
from k8slite.component.objects import Obj, is_deleting, name_of, namespace_of
from k8slite.controllers.base import Controller, ControllerContext

# The accounts upstream makes in each namespace.
ACCOUNTS = ("default",)
NAMESPACE_TERMINATING = "NamespaceTerminating"


def is_namespace_terminating(error: ApiError) -> bool:
    """The create was refused because its namespace is going away (nothing to retry)."""
    causes = (error.status.get("details") or {}).get("causes") or []
    return any(c.get("reason") == NAMESPACE_TERMINATING for c in causes)


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
            try:
                await self.client.create(SERVICEACCOUNTS, body, namespace=key)
            except AlreadyExists:
                pass
            except ApiError as e:
                if not is_namespace_terminating(e):
                    raise
        return None
