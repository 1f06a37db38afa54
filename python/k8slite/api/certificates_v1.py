"""CertificateSigningRequest (certificates.k8s.io/v1): upstream's strategy and validation.

The main resource carries the request (spec, immutable once created: updates keep the
stored spec and status); the approval subresource changes only the Approved/Denied
conditions, the status subresource only the certificate and the other conditions. Who
asked (spec.username, uid, groups, extra) is filled by the API server's admission from the
request's user (apiserver/csradmission.py), never by the client.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from k8slite.api import meta
from k8slite.api.strategy import Obj, Strategy, register
from k8slite.api.validation import DNS1123_SUBDOMAIN_MSG, FieldErrors, check_object_meta

GROUP = "certificates.k8s.io"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
# The smallest spec.expirationSeconds upstream accepts (10 minutes).
MIN_EXPIRATION_SECONDS = 600
# Upstream's KeyUsage values, in its order (the NotSupported message lists them so).
USAGES = [
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
]
_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_SIGNER_FORM = "must be a fully qualified domain and path of the form 'example.com/signer-name'"


class CSRError(ValueError):
    """spec.request is not a PEM CERTIFICATE REQUEST with a valid signature."""


def parse_request(pem: str | bytes) -> x509.CertificateSigningRequest:
    """Upstream's ParseCSR and CheckSignature: the first PEM block must be a CERTIFICATE
    REQUEST whose self-signature verifies."""
    data = pem.encode() if isinstance(pem, str) else pem
    begin = b"-----BEGIN CERTIFICATE REQUEST-----"
    start = data.find(b"-----BEGIN ")
    if start < 0 or not data[start:].startswith(begin):
        raise CSRError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(data[start:])
    except ValueError as e:
        raise CSRError(f"x509: malformed certificate request: {e}") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature, TypeError) as e:
        raise CSRError(f"x509: {e}") from None
    if not valid:
        raise CSRError("x509: ECDSA verification failure")
    return csr


def request_pem(obj: Obj) -> bytes:
    """spec.request decoded: the API carries it as base64 ([]byte), stored that way."""
    raw = (obj.get("spec") or {}).get("request") or ""
    try:
        return base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        return b""


def condition(obj: Obj, kind: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return None


def has_true(obj: Obj, kind: str) -> bool:
    c = condition(obj, kind)
    return c is not None and c.get("status") == "True"


def is_approved(obj: Obj) -> bool:
    return has_true(obj, APPROVED) and not has_true(obj, DENIED)


def check_signer_name(errs: FieldErrors, path: str, name: Any) -> None:
    """Upstream's ValidateSignerName: `<domain>/<path>`, the domain a DNS subdomain."""
    if not name:
        errs.required(path, "")
        return
    name = str(name)
    domain, slash, rest = name.partition("/")
    if not slash or not domain or not rest:
        errs.invalid(path, name, _SIGNER_FORM)
        return
    if len(domain) > 253:
        errs.too_long(path, 253)
    elif not _SUBDOMAIN_RE.match(domain):
        errs.invalid(path, name, DNS1123_SUBDOMAIN_MSG)
    elif "." not in domain:
        errs.invalid(path, name, "should be a domain with at least two segments separated by dots")
    if len(rest) > 571:
        errs.too_long(path, 571)


def _check_spec(errs: FieldErrors, spec: Any) -> None:
    if not isinstance(spec, dict):
        errs.required("spec", "")
        return
    raw = spec.get("request")
    if not raw:
        errs.required("spec.request", "")
    else:
        try:
            parse_request(request_pem({"spec": spec}))
        except CSRError as e:
            errs.invalid("spec.request", "<byte array>", str(e))
    usages = spec.get("usages")
    if not usages:
        errs.required("spec.usages", "usages must be provided")
    elif isinstance(usages, list):
        seen: set[str] = set()
        for i, usage in enumerate(usages):
            if usage not in USAGES:
                errs.not_supported(f"spec.usages[{i}]", usage, USAGES)
            elif usage in seen:
                errs.duplicate(f"spec.usages[{i}]", usage)
            seen.add(str(usage))
    signer = spec.get("signerName")
    check_signer_name(errs, "spec.signerName", signer)
    if signer == LEGACY_UNKNOWN:
        errs.invalid(
            "spec.signerName", signer, "the legacy signerName is not allowed via this API version"
        )
    seconds = spec.get("expirationSeconds")
    if seconds is not None:
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            errs.invalid("spec.expirationSeconds", seconds, "must be an integer")
        elif seconds < MIN_EXPIRATION_SECONDS:
            errs.invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration less than 600 seconds (10 minutes)",
            )


def _check_conditions(errs: FieldErrors, status: Any, old: Obj | None) -> None:
    conditions = (status or {}).get("conditions") if isinstance(status, dict) else None
    if conditions is not None and not isinstance(conditions, list):
        errs.invalid("status.conditions", conditions, "must be a list")
        return
    seen: set[str] = set()
    for i, c in enumerate(conditions or ()):
        path = f"status.conditions[{i}]"
        if not isinstance(c, dict):
            errs.invalid(path, c, "must be an object")
            continue
        kind, value = c.get("type"), c.get("status")
        if not kind:
            errs.required(f"{path}.type", "")
            continue
        if kind in seen:
            # Only one condition of a given type is allowed.
            errs.duplicate(f"{path}.type", kind)
        seen.add(str(kind))
        if kind in (APPROVED, DENIED):
            if value != "True":
                errs.not_supported(f"{path}.status", value, ["True"])
        elif value not in ("True", "False", "Unknown"):
            errs.not_supported(f"{path}.status", value, ["False", "True", "Unknown"])
    if APPROVED in seen and DENIED in seen:
        errs.invalid(
            "status.conditions",
            "",
            "Approved and Denied conditions are mutually exclusive",
        )
    if old is not None:
        for kind in (APPROVED, DENIED, FAILED):
            if condition(old, kind) is not None and kind not in seen:
                errs.forbidden(
                    "status.conditions", f"updates may not remove a condition of type {kind!r}"
                )


def _check_certificate(errs: FieldErrors, new: Obj, old: Obj | None) -> None:
    cert = (new.get("status") or {}).get("certificate")
    before = (old.get("status") or {}).get("certificate") if old is not None else None
    if before and cert != before:
        errs.forbidden("status.certificate", "updates may not modify existing certificate content")
        return
    if not cert or cert == before:
        return
    if not is_approved(new):
        errs.invalid(
            "status.certificate",
            "<certificate data>",
            "certificate may only be set if the Approved condition is true",
        )
        return
    if has_true(new, FAILED):
        errs.invalid(
            "status.certificate",
            "<certificate data>",
            "certificate may not be set if the Failed condition is true",
        )
        return
    try:
        data = base64.b64decode(str(cert), validate=True)
        certs = x509.load_pem_x509_certificates(data)
    except (binascii.Error, ValueError):
        errs.invalid(
            "status.certificate",
            "<certificate data>",
            "must contain at least one CERTIFICATE PEM block",
        )
        return
    if not certs:
        errs.invalid(
            "status.certificate",
            "<certificate data>",
            "must contain at least one CERTIFICATE PEM block",
        )


def _stamp(conditions: Any, old: Obj) -> None:
    """Upstream fills lastUpdateTime and lastTransitionTime of changed conditions with now."""
    now = meta.now()
    for c in conditions or ():
        if not isinstance(c, dict):
            continue
        before = condition(old, str(c.get("type"))) if old else None
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            same = before is not None and before.get("status") == c.get("status")
            c["lastTransitionTime"] = (before or {}).get("lastTransitionTime") if same else now
            if not c["lastTransitionTime"]:
                c["lastTransitionTime"] = now


def _keep(conditions: list[Obj], old: Obj, kinds: tuple[str, ...]) -> list[Obj]:
    """Conditions of `kinds` as stored in old, the others as the request sent them."""
    kept = [c for c in conditions if not (isinstance(c, dict) and c.get("type") in kinds)]
    stored = [
        c for c in (old.get("status") or {}).get("conditions") or () if c.get("type") in kinds
    ]
    return kept + meta.clone(stored)


@register(GROUP, "CertificateSigningRequest")
class CertificateSigningRequestStrategy(Strategy):
    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {}
        spec = obj.get("spec")
        if isinstance(spec, dict):
            # Who asked comes from the request's user (admission), never from the body.
            for key in ("username", "uid", "groups", "extra"):
                spec.pop(key, None)

    def prepare_update(self, new: Obj, old: Obj) -> None:
        # Upstream: an update of the main resource changes metadata only.
        new["spec"] = meta.clone(old.get("spec") or {})
        new["status"] = meta.clone(old.get("status") or {})

    def prepare_status_update(self, new: Obj, old: Obj) -> Obj:
        out = meta.clone(old)
        status = new.get("status") if isinstance(new.get("status"), dict) else {}
        status = dict(status or {})
        conditions = status.get("conditions") if isinstance(status.get("conditions"), list) else []
        # Approval is the approval subresource's: a status write keeps Approved and Denied.
        status["conditions"] = _keep(list(conditions or ()), old, (APPROVED, DENIED))
        if not status["conditions"]:
            status.pop("conditions")
        _stamp(status.get("conditions"), old)
        out["status"] = status
        out["metadata"] = _metadata_of(new, old)
        return out

    def prepare_subresource(self, subresource: str, new: Obj, old: Obj) -> Obj:
        if subresource != "approval":
            return super().prepare_subresource(subresource, new, old)
        out = meta.clone(old)
        status = new.get("status") if isinstance(new.get("status"), dict) else {}
        conditions = (status or {}).get("conditions")
        conditions = list(conditions) if isinstance(conditions, list) else []
        # The approval subresource changes Approved and Denied only.
        other = tuple(
            {str(c.get("type")) for c in conditions if isinstance(c, dict)} - {APPROVED, DENIED}
        ) + (FAILED,)
        out.setdefault("status", {})
        out["status"]["conditions"] = _keep(conditions, old, other)
        if not out["status"]["conditions"]:
            out["status"].pop("conditions")
        _stamp(out["status"].get("conditions"), old)
        out["metadata"] = _metadata_of(new, old)
        errs = FieldErrors()
        self.validate_status(out, old, errs)
        name = str(old["metadata"].get("name") or "")
        errs.raise_if_any("CertificateSigningRequest", name, GROUP)
        return out

    def validate(self, obj: Obj, errs: FieldErrors, namespaced: bool) -> None:
        check_object_meta(errs, obj.get("metadata", {}), namespaced, self.name_check)
        _check_spec(errs, obj.get("spec"))
        _check_conditions(errs, obj.get("status"), None)

    def validate_update(self, new: Obj, old: Obj, errs: FieldErrors, namespaced: bool) -> None:
        check_object_meta(errs, new.get("metadata", {}), namespaced, self.name_check)

    def validate_status(self, new: Obj, old: Obj, errs: FieldErrors) -> None:
        _check_conditions(errs, new.get("status"), old)
        _check_certificate(errs, new, old)


def _metadata_of(new: Obj, old: Obj) -> Obj:
    """Upstream's subresource updates keep the stored metadata but for labels/annotations
    the client sent alongside (its resetFields leave metadata to the request)."""
    m = meta.clone(old["metadata"])
    sent = new.get("metadata")
    if isinstance(sent, dict):
        for key in ("labels", "annotations", "finalizers", "ownerReferences"):
            if key in sent:
                m[key] = sent[key]
    return m


def requested_duration(obj: Obj) -> dt.timedelta | None:
    seconds = (obj.get("spec") or {}).get("expirationSeconds")
    return dt.timedelta(seconds=int(seconds)) if isinstance(seconds, int) else None
