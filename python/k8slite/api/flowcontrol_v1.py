"""flowcontrol.apiserver.k8s.io/v1 FlowSchema rules: the status comes from the API server."""

from __future__ import annotations

from k8slite.api.strategy import Obj, Strategy, register


@register("flowcontrol.apiserver.k8s.io", "FlowSchema")
class FlowSchemaStrategy(Strategy):
    """Only the API server writes these (at start), status (the Dangling condition) included."""

    reset_status_on_create = False

    def prepare_update(self, new: Obj, old: Obj) -> None:
        """The server's own writes set spec and status together."""
