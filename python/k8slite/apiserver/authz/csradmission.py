"""Admission of CertificateSigningRequests, as upstream's plugins of the same purpose.

- create: spec.username, uid, groups and extra become the requesting user's
  (the registry strategy clears whatever the client sent), and CertificateSubjectRestriction
  refuses kubernetes.io/kube-apiserver-client requests for the system:masters group;
- CertificateApproval: a write of the approval subresource needs `approve` on the
  `signers` resource (certificates.k8s.io) named by the request's signerName, or by its
  `<domain>/*` wildcard, besides `update` on certificatesigningrequests/approval;
- CertificateSigning: a status write that sets or changes status.certificate needs `sign`
  on the signer likewise.
"""

from __future__ import annotations

from cryptography.x509.oid import NameOID

from k8slite.api import errors
from k8slite.api.certificates_v1 import GROUP, KUBE_APISERVER_CLIENT, parse_request, request_pem
from k8slite.api.validation import go_repr
from k8slite.apiserver import writes
from k8slite.apiserver.authn import MASTERS, UserInfo, user_of
from k8slite.apiserver.authz.attributes import Attributes
from k8slite.apiserver.authz.authorizer import Authorizer
from k8slite.apiserver.http import Request
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.component.objects import Obj

_PLURAL = "certificatesigningrequests"


class CertificateAdmission:
    """A resource handler filter; runs after authorization allowed the request."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def filter(self, req: Request, info: RequestInfo) -> None:
        rt = info.resource
        if rt.group != GROUP or rt.plural != _PLURAL:
            return
        user = user_of(req.scope)
        if user is None:
            return
        if info.verb == "create" and info.subresource is None:
            writes.admit(req, lambda new, old: _on_create(user, new))
        elif info.verb in ("update", "patch") and info.subresource == "approval":
            writes.admit(req, lambda new, old: self._require(user, "approve", new))
        elif info.verb in ("update", "patch") and info.subresource == "status":

            def signing(new: Obj, old: Obj | None) -> None:
                cert = (new.get("status") or {}).get("certificate")
                before = ((old or {}).get("status") or {}).get("certificate")
                if cert and cert != before:
                    self._require(user, "sign", new)

            writes.admit(req, signing)

    def allowed(self, user: UserInfo, verb: str, signer: str) -> bool:
        """Upstream's IsAuthorizedForSignerName: the exact name, then `<domain>/*`."""
        names = [signer]
        if "/" in signer:
            names.append(signer.split("/", 1)[0] + "/*")
        for name in names:
            attrs = Attributes(user, verb, True, GROUP, "*", "signers", name=name)
            if self.authorizer.authorize(attrs)[0]:
                return True
        return False

    def _require(self, user: UserInfo, verb: str, csr: Obj) -> None:
        signer = str((csr.get("spec") or {}).get("signerName") or "")
        if not self.allowed(user, verb, signer):
            raise errors.forbidden(
                _PLURAL,
                str(csr["metadata"].get("name") or ""),
                GROUP,
                f"user not permitted to {verb} requests with signerName {go_repr(signer)}",
            )


def _on_create(user: UserInfo, csr: Obj) -> None:
    spec = csr.setdefault("spec", {})
    spec["username"] = user.name
    if user.uid:
        spec["uid"] = user.uid
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    if spec.get("signerName") == KUBE_APISERVER_CLIENT:
        request = parse_request(request_pem(csr))
        orgs = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        if MASTERS in orgs:
            raise errors.forbidden(
                _PLURAL,
                str(csr["metadata"].get("name") or ""),
                GROUP,
                f"use of {KUBE_APISERVER_CLIENT} signer with {MASTERS} group is not allowed",
            )
