"""apiregistration.k8s.io/v1 APIService: defaults and validation as upstream's aggregator."""

from __future__ import annotations

from k8slite.api.strategy import Strategy, register
from k8slite.api.validation import (
    FieldErrors,
    check_dns_label,
    check_dns_subdomain,
    check_port_number,
)
from k8slite.component.objects import Obj

GROUP = "apiregistration.k8s.io"


@register(GROUP, "APIService")
class APIServiceStrategy(Strategy):
    name_check = "subdomain"

    def default(self, obj: Obj) -> None:
        service = (obj.get("spec") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        super().validate(obj, errs, namespaced)
        spec = obj.get("spec") or {}
        group, version = spec.get("group") or "", spec.get("version") or ""
        name = (obj.get("metadata") or {}).get("name")
        expected = f"{version}.{group}" if group else version
        if name is not None and name != expected:
            errs.invalid("metadata.name", name, f"must be {expected}")
        if group:
            check_dns_subdomain(errs, "spec.group", group)
        elif version != "v1":
            errs.required(
                "spec.group", "only v1 may have an empty group and it better be legacy kube"
            )
        if not version:
            errs.required("spec.version")
        else:
            check_dns_label(errs, "spec.version", version)
        minimum = spec.get("groupPriorityMinimum")
        if not isinstance(minimum, int) or not 0 < minimum <= 20000:
            errs.invalid(
                "spec.groupPriorityMinimum", minimum, "must be positive and less than 20000"
            )
        priority = spec.get("versionPriority")
        if not isinstance(priority, int) or not 0 < priority <= 1000:
            errs.invalid("spec.versionPriority", priority, "must be positive and less than 1000")
        service = spec.get("service")
        if service is None:
            if spec.get("caBundle"):
                errs.invalid(
                    "spec.caBundle", "<bytes>", "local APIServices may not have a caBundle"
                )
            if spec.get("insecureSkipTLSVerify"):
                errs.invalid(
                    "spec.insecureSkipTLSVerify",
                    True,
                    "local APIServices may not have insecureSkipTLSVerify",
                )
            return
        if not isinstance(service, dict):
            errs.invalid("spec.service", service, "must be an object")
            return
        if not service.get("namespace"):
            errs.required("spec.service.namespace")
        if not service.get("name"):
            errs.required("spec.service.name")
        if service.get("port") is not None:
            check_port_number(errs, "spec.service.port", service["port"])
        if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
            errs.invalid(
                "spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present"
            )
