"""Admission webhooks: Mutating/ValidatingWebhookConfiguration called on matching writes.

Each matching webhook gets an HTTPS POST of an admission.k8s.io/v1 AdmissionReview, to
clientConfig.url or to a ready endpoint of clientConfig.service (the API server is not in
the pod network: it dials the endpoint address, verifying the certificate for
<service>.<namespace>.svc against caBundle, as upstream's endpoint routing does). Mutating
webhooks run in name order of their configurations, each seeing the previous one's JSON
patch, with one reinvocation round for reinvocationPolicy IfNeeded; validating webhooks
see the final object.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from k8slite._native import LabelSelector, loads
from k8slite.api import celrules, errors, meta
from k8slite.api.celrules import Expression, compile_expression
from k8slite.api.patch import json_patch
from k8slite.api.resources import ResourceType
from k8slite.apiserver.admission import rule_matches
from k8slite.apiserver.authn import UserInfo
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.policies import PolicyEvaluator
from k8slite.component.objects import Obj, labels_of, namespace_of

log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
MUTATING = "mutatingwebhookconfigurations"
VALIDATING = "validatingwebhookconfigurations"
# Kinds whose writes never go through webhooks (a broken webhook must not lock them out).
_EXEMPT = {(GROUP, MUTATING), (GROUP, VALIDATING)}
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


@dataclass(frozen=True)
class Webhook:
    """One webhook of a configuration, with its selectors parsed once."""

    config: str
    spec: Obj
    namespace_selector: LabelSelector
    object_selector: LabelSelector
    # matchConditions, compiled once per configuration change: (name, expression).
    conditions: tuple[tuple[str, Expression], ...] = ()

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "")


class WebhookCallError(Exception):
    """The webhook could not be called or answered nonsense: subject to failurePolicy."""


def _go_error(e: Exception, url: str) -> str:
    """The cause in the words of Go's HTTP client, as upstream reports it."""
    if isinstance(e, httpx.TimeoutException):
        return "context deadline exceeded"
    if _refused(e):
        parts = urlsplit(url)
        return f"dial tcp {parts.hostname}:{parts.port or 443}: connect: connection refused"
    return str(e) or type(e).__name__


def _in_version(obj: Obj | None, rt: ResourceType) -> Obj | None:
    """The object as the request's version shows it: the registry keeps a custom resource
    in its storage version's apiVersion, and versions convert with strategy None."""
    if obj is None or obj.get("apiVersion") == rt.api_version:
        return obj
    return {**obj, "apiVersion": rt.api_version}


def _refused(e: BaseException | None, depth: int = 0) -> bool:
    """Whether a connection refusal is behind e (trio groups the attempts' errors)."""
    if e is None or depth > 8:
        return False
    if isinstance(e, ConnectionRefusedError):
        return True
    if isinstance(e, BaseExceptionGroup) and any(_refused(x, depth + 1) for x in e.exceptions):
        return True
    return _refused(e.__cause__ or e.__context__, depth + 1)


def _conditions_match(hook: Webhook, request: Obj) -> bool:
    """Every matchCondition true (the webhook is called); an error is a call failure."""
    variables = {
        "object": request.get("object"),
        "oldObject": request.get("oldObject"),
        "request": request,
    }
    for name, expression in hook.conditions:
        try:
            result = expression.run(variables)
        except (RuntimeError, TypeError, KeyError, ValueError, OverflowError) as e:
            raise WebhookCallError(
                f"failed to evaluate match condition {name!r}: {celrules.eval_error(e)}"
            ) from None
        if result is not True:
            return False
    return True


def _ssl_context(spec: Obj) -> ssl.SSLContext:
    bundle = (spec.get("clientConfig") or {}).get("caBundle")
    if bundle:
        return ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
    return ssl.create_default_context()


class WebhookDispatcher:
    """Reads the webhook configurations from the API server's caches and calls them."""

    def __init__(self, core: ApiCore, *, mutating: bool = True, validating: bool = True) -> None:
        self.core = core
        # Which of upstream's two plugins are on (--disable-admission-plugins).
        self.enabled = {MUTATING: mutating, VALIDATING: validating}
        # ValidatingAdmissionPolicy, evaluated before the validating webhooks as upstream
        # orders its plugins; None when that plugin is off.
        self.policies: PolicyEvaluator | None = None
        self._parsed: dict[str, tuple[object, list[Webhook]]] = {}

    def webhooks(self, plural: str) -> list[Webhook]:
        """The webhooks of every configuration of a kind, reparsed only after a change."""
        if not self.enabled[plural]:
            return []
        reg = self.core.registries[(GROUP, plural)]
        seen = self._parsed.get(plural)
        if seen is not None and seen[0] is reg.changed:
            return seen[1]
        items, _, _, _ = reg.cache.list(reg.rt.prefix(None), None, None, 0, None, None)
        hooks: list[Webhook] = []
        for config in sorted(loads(items), key=lambda c: c["metadata"]["name"]):
            for spec in config.get("webhooks") or ():
                hooks.append(
                    Webhook(
                        config["metadata"]["name"],
                        spec,
                        LabelSelector.from_dict(spec.get("namespaceSelector") or {}),
                        LabelSelector.from_dict(spec.get("objectSelector") or {}),
                        tuple(
                            (str(c["name"]), compile_expression(str(c["expression"])))
                            for c in spec.get("matchConditions") or ()
                        ),
                    )
                )
        self._parsed[plural] = (reg.changed, hooks)
        return hooks

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        hit = self.core.registries[("", "namespaces")].cache.get(
            f"/registry/core/namespaces/{namespace}"
        )
        return labels_of(loads(hit[0])) if hit else {}

    def service_endpoint(self, service: Obj) -> tuple[str, int]:
        """A ready endpoint (address, port) of a webhook's Service, from its EndpointSlices."""
        ns, name = service.get("namespace"), service.get("name")
        port = int(service.get("port") or 443)
        svc_hit = self.core.registries[("", "services")].cache.get(
            f"/registry/core/services/{ns}/{name}"
        )
        if svc_hit is None:
            raise WebhookCallError(f'service "{name}" not found')
        svc = loads(svc_hit[0])
        svc_port = next(
            (p for p in (svc.get("spec") or {}).get("ports") or () if p.get("port") == port), None
        )
        if svc_port is None:
            raise WebhookCallError(f'service "{name}" has no port {port}')
        slices = self.core.registries[("discovery.k8s.io", "endpointslices")]
        items, _, _, _ = slices.cache.list(slices.rt.prefix(ns), None, None, 0, None, None)
        for es in loads(items):
            if labels_of(es).get("kubernetes.io/service-name") != name:
                continue
            target = next(
                (
                    p.get("port")
                    for p in es.get("ports") or ()
                    if (p.get("name") or "") == (svc_port.get("name") or "")
                ),
                None,
            )
            if target is None:
                continue
            for ep in es.get("endpoints") or ():
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for address in ep.get("addresses") or ():
                    return str(address), int(target)
        raise WebhookCallError(f'service "{ns}/{name}" has no ready endpoints')

    def for_request(
        self,
        user: UserInfo | None,
        options: Obj,
        warn: Callable[[str], None],
        annotate: Callable[[str, str], None],
    ) -> RequestWebhooks:
        return RequestWebhooks(self, user, options, warn, annotate)


def _user_info(user: UserInfo | None) -> Obj:
    if user is None:
        return {}
    info: Obj = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = user.extra
    return info


class RequestWebhooks:
    """The webhook admission of one request (its user, options and warnings)."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        user: UserInfo | None,
        options: Obj,
        warn: Callable[[str], None],
        annotate: Callable[[str, str], None],
    ) -> None:
        self.dispatcher = dispatcher
        self.user = user
        self.options = options
        self.warn = warn
        # Adds to the request's audit event (auditAnnotations, failed Audit validations).
        self.annotate = annotate

    # ------------------------------------------------------------------ matching

    def _matching(
        self,
        plural: str,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        subresource: str | None,
    ) -> list[Webhook]:
        if (rt.group, rt.plural) in _EXEMPT:
            return []
        hooks = self.dispatcher.webhooks(plural)
        if not hooks:
            return []
        some = obj if obj is not None else old
        assert some is not None
        namespace = namespace_of(some) if rt.namespaced else None
        ns_labels: dict[str, str] | None = None
        if namespace:
            ns_labels = self.dispatcher.namespace_labels(namespace)
        elif rt.group == "" and rt.plural == "namespaces":
            ns_labels = labels_of(some)
        found = []
        for hook in hooks:
            rules = hook.spec.get("rules") or ()
            if not any(rule_matches(r, rt, operation, subresource) for r in rules):
                continue
            if ns_labels is not None and not hook.namespace_selector.matches(ns_labels):
                continue
            if not (
                obj is not None
                and hook.object_selector.matches(labels_of(obj))
                or old is not None
                and hook.object_selector.matches(labels_of(old))
            ):
                continue
            found.append(hook)
        return found

    # ------------------------------------------------------------------- calling

    def _review(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
    ) -> Obj:
        some = obj if obj is not None else old
        assert some is not None
        m = some.get("metadata") or {}
        kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        resource = {"group": rt.group, "version": rt.version, "resource": rt.plural}
        request: Obj = {
            "uid": str(uuid.uuid4()),
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": m.get("name") or "",
            "operation": operation,
            "userInfo": _user_info(self.user),
            "object": _in_version(obj, rt),
            "oldObject": _in_version(old, rt),
            "dryRun": dry_run,
            "options": {
                "kind": _OPTIONS_KIND.get(operation, "CreateOptions"),
                "apiVersion": "meta.k8s.io/v1",
                **self.options,
            },
        }
        if subresource:
            request["subResource"] = subresource
            request["requestSubResource"] = subresource
        if rt.namespaced:
            request["namespace"] = m.get("namespace") or ""
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}

    async def _post(self, hook: Webhook, review: Obj) -> Obj:
        """POST the review; the AdmissionReview response (WebhookCallError if none)."""
        spec = hook.spec
        config = spec.get("clientConfig") or {}
        timeout = int(spec.get("timeoutSeconds") or 10)
        extensions: dict[str, Any] = {}
        if config.get("url"):
            url = str(config["url"])
        else:
            service = config.get("service") or {}
            address, port = self.dispatcher.service_endpoint(service)
            host = f"[{address}]" if ":" in address else address
            url = f"https://{host}:{port}{service.get('path') or ''}"
            extensions["sni_hostname"] = f"{service.get('name')}.{service.get('namespace')}.svc"
        url = f"{url}{'&' if '?' in url else '?'}timeout={timeout}s"
        try:
            async with httpx.AsyncClient(verify=_ssl_context(spec), timeout=timeout) as client:
                answer = await client.post(
                    url,
                    content=json.dumps(review).encode(),
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                    extensions=extensions,
                )
        except (httpx.HTTPError, ssl.SSLError, OSError, ValueError) as e:
            raise WebhookCallError(
                f'failed to call webhook: Post "{url}": {_go_error(e, url)}'
            ) from None
        if answer.status_code != 200:
            raise WebhookCallError(
                f"received invalid webhook response: the server responded with status "
                f"{answer.status_code}"
            )
        try:
            body = answer.json()
        except ValueError as e:
            raise WebhookCallError(f"received invalid webhook response: {e}") from None
        response = body.get("response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise WebhookCallError("received invalid webhook response: response is missing")
        uid = review["request"]["uid"]
        if response.get("uid") != uid:
            raise WebhookCallError(
                f'expected response.uid="{uid}", got "{response.get("uid") or ""}"'
            )
        return response

    def _refused(self, hook: Webhook, response: Obj) -> errors.ApiError:
        """upstream's denial: the webhook's status, its message prefixed with who denied."""
        status = response.get("status") or {}
        given = status.get("code")
        code = given if isinstance(given, int) and given >= 400 else 400
        denied = f'admission webhook "{hook.name}" denied the request'
        if status.get("message"):
            message = f"{denied}: {status['message']}"
        elif status.get("reason"):
            message = f"{denied}: {status['reason']}"
        else:
            message = f"{denied} without explanation"
        return errors.ApiError(
            code, str(status.get("reason") or ""), message, status.get("details")
        )

    def _failed(self, hook: Webhook, problem: str) -> errors.ApiError | None:
        """A call failure: refused under failurePolicy Fail, logged and ignored otherwise."""
        if hook.spec.get("failurePolicy", "Fail") == "Ignore":
            log.warning("failed calling webhook %r (failurePolicy Ignore): %s", hook.name, problem)
            return None
        return errors.internal(f'failed calling webhook "{hook.name}": {problem}')

    async def _call(
        self,
        hook: Webhook,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
        mutating: bool,
    ) -> Obj | None:
        """Call one webhook; a patched object (mutating, when it patched) or None."""
        review = self._review(rt, operation, obj, old, subresource, dry_run)
        try:
            if not _conditions_match(hook, review["request"]):
                return None
            response = await self._post(hook, review)
            for warning in response.get("warnings") or ():
                self.warn(str(warning))
            annotations = response.get("auditAnnotations")
            for key, value in (annotations if isinstance(annotations, dict) else {}).items():
                self.annotate(f"{hook.name}/{key}", str(value))
            if not response.get("allowed"):
                raise self._refused(hook, response)
            patch = response.get("patch")
            if not patch or not mutating or obj is None:
                return None
            if response.get("patchType") != "JSONPatch":
                raise WebhookCallError(f'unsupported patch type "{response.get("patchType")}"')
            try:
                patched = json_patch(meta.clone(obj), json.loads(base64.b64decode(patch)))
            except (errors.ApiError, ValueError) as e:
                raise WebhookCallError(f"JSON patch could not be applied: {e}") from None
            if not isinstance(patched, dict):
                raise WebhookCallError("JSON patch did not leave an object")
            return patched
        except WebhookCallError as e:
            refusal = self._failed(hook, str(e))
            if refusal is not None:
                raise refusal from None
            return None

    async def mutate(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
    ) -> Obj:
        hooks = self._matching(MUTATING, rt, operation, obj, old, subresource)
        if not hooks:
            return obj
        current = obj
        # What each IfNeeded webhook last saw: reinvoked once if a later one changed it.
        seen: list[tuple[Webhook, Obj]] = []
        for hook in hooks:
            patched = await self._call(
                hook, rt, operation, current, old, subresource, dry_run, True
            )
            if patched is not None:
                current = patched
            if hook.spec.get("reinvocationPolicy") == "IfNeeded":
                seen.append((hook, current))
        for hook, saw in seen:
            if saw != current:
                patched = await self._call(
                    hook, rt, operation, current, old, subresource, dry_run, True
                )
                if patched is not None:
                    current = patched
        return current

    async def validate(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        subresource: str | None,
        dry_run: bool,
    ) -> None:
        policies = self.dispatcher.policies
        if policies is not None and policies.bindings():
            request = self._review(rt, operation, obj, old, subresource, dry_run)["request"]
            policies.check(rt, operation, obj, old, subresource, request, self.warn, self.annotate)
        if operation == "DELETE":
            # A delete has nothing to mutate: mutating webhooks are called for their verdict.
            for hook in self._matching(MUTATING, rt, operation, obj, old, subresource):
                await self._call(hook, rt, operation, obj, old, subresource, dry_run, True)
        for hook in self._matching(VALIDATING, rt, operation, obj, old, subresource):
            await self._call(hook, rt, operation, obj, old, subresource, dry_run, False)
