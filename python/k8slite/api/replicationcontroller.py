"""core/v1 ReplicationController: the ReplicaSet's rules with a plain label-map selector."""

from __future__ import annotations

from k8slite._native import LabelSelector

# The ReplicaSet's strategy (status checks, generation tracking) and template defaults.
from k8slite.api.apps_v1 import _default_template, _WorkloadStrategy, validate_template
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import FieldErrors, check_labels, check_non_negative
from k8slite.component.objects import labels_of


@register("", "ReplicationController")
class ReplicationControllerStrategy(_WorkloadStrategy):
    def default(self, obj: Obj) -> None:
        """Upstream's SetDefaults_ReplicationController: an unset selector (and unset
        labels) come from the template's labels; replicas 1."""
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        template = spec.get("template")
        template_labels = labels_of(template) if isinstance(template, dict) else {}
        if template_labels:
            if not spec.get("selector"):
                spec["selector"] = dict(template_labels)
            m = obj.setdefault("metadata", {})
            if isinstance(m, dict) and not m.get("labels"):
                m["labels"] = dict(template_labels)
        spec.setdefault("replicas", 1)
        _default_template(spec)

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        # The metadata checks only: the ReplicaSet's selector rules do not apply.
        Strategy.validate(self, obj, errs, namespaced)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            errs.required("spec")
            return
        check_non_negative(errs, "spec.replicas", spec.get("replicas"))
        check_non_negative(errs, "spec.minReadySeconds", spec.get("minReadySeconds"))
        selector = spec.get("selector")
        if not selector or not isinstance(selector, dict):
            errs.required("spec.selector")
            return
        before = len(errs.causes)
        check_labels(errs, "spec.selector", selector)
        if len(errs.causes) > before:
            return
        parsed = LabelSelector.from_dict({"matchLabels": selector})
        validate_template(errs, spec.get("template"), parsed)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        # Unlike a ReplicaSet's, an RC's selector may change.
        self.validate(new, errs, namespaced)
