"""coordination.k8s.io/v1 Lease and discovery.k8s.io/v1 EndpointSlice rules."""

from __future__ import annotations

from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_non_negative, check_port_number

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


@register("coordination.k8s.io", "Lease")
class LeaseStrategy(Strategy):
    allow_create_on_update = True

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            errs.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
        check_non_negative(errs, "spec.leaseTransitions", spec.get("leaseTransitions"))


@register("discovery.k8s.io", "EndpointSlice")
class EndpointSliceStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        for port in obj.get("ports") or ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        kind = obj.get("addressType")
        if not kind:
            errs.required("addressType")
        elif kind not in ADDRESS_TYPES:
            errs.not_supported("addressType", kind, ADDRESS_TYPES)
        for i, ep in enumerate(obj.get("endpoints") or ()):
            addresses = (ep or {}).get("addresses")
            if not addresses:
                errs.required(f"endpoints[{i}].addresses")
            elif len(addresses) > 100:
                errs.too_long(f"endpoints[{i}].addresses", 100)
        for i, port in enumerate(obj.get("ports") or ()):
            if isinstance(port, dict) and port.get("port") is not None:
                check_port_number(errs, f"ports[{i}].port", port["port"])
