"""csrapproving and csrsigning: upstream's certificate controllers in the controller manager.

The approver auto-approves kubelet client certificate requests (signer
kubernetes.io/kube-apiserver-client-kubelet) when a SubjectAccessReview says the requester
may create certificatesigningrequests/selfnodeclient (a node renewing its own certificate)
or certificatesigningrequests/nodeclient (a bootstrapper asking for a new node's). K8s-Lite
also approves a node's request for its own kubelet serving certificate (signer
kubernetes.io/kubelet-serving) when the requester is the node the certificate names and
every subjectAltName is that node's name or one of the addresses its Node reports (the
signer's own checks): upstream leaves these to an administrator or an add-on approver such
as kubelet-csr-approver, so that `kubectl logs` and `exec` reach joined nodes at once. The
signer issues approved requests of the three built-in signers with the cluster CA, or marks
them Failed when they break the signer's rules (csrrules.py).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from k8slite.api import meta
from k8slite.api.certificates_v1 import (
    APPROVED,
    DENIED,
    FAILED,
    KUBE_APISERVER_CLIENT_KUBELET,
    KUBELET_SERVING,
    CSRError,
    condition,
    has_true,
    is_approved,
    parse_request,
    request_pem,
)
from k8slite.client import NotFound
from k8slite.client.resource import NODES, Resource
from k8slite.component.objects import Obj, name_of
from k8slite.controllers import csrrules
from k8slite.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

CSRS = Resource("certificates.k8s.io", "v1", "certificatesigningrequests")
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews")
# How soon a recognised request the requester may not have approved is looked at again
# (a role binding may come later).
SAR_RETRY = 30.0
# How soon a serving request whose SANs the Node does not (yet) report is looked at again.
SERVING_RETRY = 2.0
SERVING_APPROVAL = (
    "Auto approving self kubelet serving certificate: its subjectAltNames are the node's "
    "name and addresses."
)
# (SubjectAccessReview subresource, recognizer, approval message), upstream's order.
_RECOGNIZERS = (
    (
        "selfnodeclient",
        lambda req, csr: csrrules.is_self_node_client(
            req, list(csr["spec"].get("usages") or ()), str(csr["spec"].get("username") or "")
        ),
        "Auto approving self kubelet client certificate after SubjectAccessReview.",
    ),
    (
        "nodeclient",
        lambda req, csr: csrrules.is_node_client(req, list(csr["spec"].get("usages") or ())),
        "Auto approving kubelet client certificate after SubjectAccessReview.",
    ),
)


def _now_condition(kind: str, reason: str, message: str) -> Obj:
    now = meta.now()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }


class CSRApprovingController(Controller):
    name = "certificatesigningrequest-approving-controller"
    queue_name = "csrapproving"
    event_source = "csrapproving"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        self.csrs = ctx.informers.informer(CSRS)
        self.nodes = ctx.informers.informer(NODES)
        self.csrs.add_event_handler(self.enqueue, lambda _old, new: self.enqueue(new), None)

    def _serving_problem(self, csr: Obj) -> str | None:
        """Why a kubelet serving request is not a node's for itself, or None."""
        spec = csr["spec"]
        username = str(spec.get("username") or "")
        if not username.startswith(csrrules.NODE_PREFIX) or csrrules.NODES_GROUP not in (
            spec.get("groups") or ()
        ):
            return "not requested by a node"
        try:
            req = parse_request(request_pem(csr))
        except CSRError as e:
            return str(e)
        if csrrules.common_name(req) != username:
            return "its common name is not the requester's"
        node = self.nodes.get(username[len(csrrules.NODE_PREFIX) :])
        return csrrules.kubelet_serving_problem(req, list(spec.get("usages") or ()), node)

    async def _approve(self, csr: Obj, message: str) -> None:
        body = meta.clone(csr)
        conditions = body.setdefault("status", {}).setdefault("conditions", [])
        conditions.append(_now_condition(APPROVED, "AutoApproved", message))
        try:
            await self.client.update(CSRS, body, subresource="approval")
        except NotFound:
            pass

    async def _allowed(self, csr: Obj, subresource: str) -> bool:
        spec = csr["spec"]
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": spec.get("username", ""),
                "uid": spec.get("uid", ""),
                "groups": list(spec.get("groups") or ()),
                "extra": dict(spec.get("extra") or {}),
                "resourceAttributes": {
                    "group": "certificates.k8s.io",
                    "resource": "certificatesigningrequests",
                    "subresource": subresource,
                    "verb": "create",
                },
            },
        }
        answer = await self.client.create(SUBJECT_ACCESS_REVIEWS, review)
        return bool((answer.get("status") or {}).get("allowed"))

    async def sync(self, key: str) -> float | None:
        csr = self.csrs.get(key)
        if csr is None or condition(csr, APPROVED) or condition(csr, DENIED):
            return None
        signer = (csr.get("spec") or {}).get("signerName")
        if signer == KUBELET_SERVING:
            problem = self._serving_problem(csr)
            if problem is None:
                await self._approve(csr, SERVING_APPROVAL)
                return None
            log.info("not approving kubelet serving csr %s: %s", key, problem)
            # The Node may report the address a moment later; never if not a node's.
            return (
                SERVING_RETRY
                if "not addresses of" in problem or "does not exist" in problem
                else None
            )
        if signer != KUBE_APISERVER_CLIENT_KUBELET:
            return None
        try:
            req = parse_request(request_pem(csr))
        except CSRError:
            return None
        tried = []
        for subresource, recognize, message in _RECOGNIZERS:
            if not recognize(req, csr):
                continue
            tried.append(subresource)
            if await self._allowed(csr, subresource):
                await self._approve(csr, message)
                return None
        if tried:
            log.info(
                "recognized csr %s as %s but subject access review was not approved",
                key,
                tried,
            )
            return SAR_RETRY
        return None


class CSRSigningController(Controller):
    name = "certificatesigningrequest-signing-controller"
    queue_name = "csrsigning"
    event_source = "csrsigning"

    def __init__(self, ctx: ControllerContext, workers: int = 1) -> None:
        super().__init__(ctx, workers)
        opts = ctx.options
        assert opts.cluster_signing_cert_file and opts.cluster_signing_key_file
        self.ca_cert = x509.load_pem_x509_certificate(
            Path(opts.cluster_signing_cert_file).read_bytes()
        )
        self.ca_key = load_pem_private_key(
            Path(opts.cluster_signing_key_file).read_bytes(), password=None
        )
        self.max_duration = opts.cluster_signing_duration
        self.csrs = ctx.informers.informer(CSRS)
        self.nodes = ctx.informers.informer(NODES)
        self.csrs.add_event_handler(self.enqueue, lambda _old, new: self.enqueue(new), None)

    def _node_of(self, username: str) -> Obj | None:
        if not username.startswith(csrrules.NODE_PREFIX):
            return None
        return self.nodes.get(username[len(csrrules.NODE_PREFIX) :])

    async def sync(self, key: str) -> float | None:
        csr = self.csrs.get(key)
        if csr is None or not is_approved(csr) or has_true(csr, FAILED):
            return None
        status, spec = csr.get("status") or {}, csr.get("spec") or {}
        signer = spec.get("signerName")
        if status.get("certificate") or signer not in csrrules.SIGNERS:
            return None
        usages = list(spec.get("usages") or ())
        body = meta.clone(csr)
        try:
            req = parse_request(request_pem(csr))
            problem = csrrules.signer_problem(
                str(signer), req, usages, self._node_of(csrrules.common_name(req))
            )
        except CSRError as e:
            problem = str(e)
        if problem is not None:
            body["status"].setdefault("conditions", []).append(
                _now_condition(FAILED, "SignerValidationFailure", problem)
            )
        else:
            seconds = spec.get("expirationSeconds")
            duration = csrrules.certificate_duration(
                seconds if isinstance(seconds, int) else None, self.max_duration
            )
            pem = csrrules.sign(req, usages, self.ca_cert, self.ca_key, duration)
            body["status"]["certificate"] = base64.b64encode(pem).decode()
        try:
            await self.client.update_status(CSRS, body)
        except NotFound:
            log.debug("csr %s went away before it was signed", name_of(csr))
        return None
