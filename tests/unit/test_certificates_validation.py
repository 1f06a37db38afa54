"""CertificateSigningRequest validation and subresource rules (api/certificates_v1.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from k8slite.api import errors
from k8slite.api.certificates_v1 import CertificateSigningRequestStrategy, check_signer_name
from k8slite.api.validation import FieldErrors
from tests.integration.csr_helpers import csr_object, csr_pem

STRATEGY = CertificateSigningRequestStrategy()


def _errors(obj: dict[str, Any]) -> list[str]:
    errs = FieldErrors()
    STRATEGY.validate(obj, errs, False)
    return [f"{c['field']}: {c['message']}" for c in errs.causes]


def test_a_valid_request_passes() -> None:
    assert _errors(csr_object("ok", csr_pem("a"), expirationSeconds=600)) == []


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("example.com/signer", True),
        ("kubernetes.io/kube-apiserver-client", True),
        ("example.com/a/b", True),
        ("example/signer", False),
        ("example.com", False),
        ("example.com/", False),
        ("Example.com/x", False),
        ("", False),
    ],
)
def test_signer_names(name: str, ok: bool) -> None:
    errs = FieldErrors()
    check_signer_name(errs, "spec.signerName", name)
    assert (not errs) == ok, errs.causes


def test_legacy_unknown_and_duplicate_usages_are_refused() -> None:
    obj = csr_object("x", csr_pem("a"), "kubernetes.io/legacy-unknown")
    obj["spec"]["usages"] = ["client auth", "client auth"]
    found = _errors(obj)
    assert any("the legacy signerName is not allowed via this API version" in e for e in found)
    assert 'spec.usages[1]: Duplicate value: "client auth"' in found


def test_a_certificate_request_must_be_one() -> None:
    import base64

    cert_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    obj = csr_object("x", cert_pem)
    assert any("PEM block type must be CERTIFICATE REQUEST" in e for e in _errors(obj))
    obj["spec"]["request"] = base64.b64encode(
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    ).decode()
    assert any(e.startswith("spec.request: Invalid value") for e in _errors(obj))


def _stored() -> dict[str, Any]:
    obj = csr_object("x", csr_pem("a"))
    obj["metadata"].update({"uid": "u", "resourceVersion": "1"})
    obj["status"] = {}
    return obj


def _approve(old: dict[str, Any], *conditions: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(old)
    new["status"]["conditions"] = list(conditions)
    return STRATEGY.prepare_subresource("approval", new, old)


def test_approval_rules() -> None:
    old = _stored()
    approved = _approve(old, {"type": "Approved", "status": "True", "reason": "R"})
    (cond,) = approved["status"]["conditions"]
    assert cond["lastUpdateTime"] and cond["lastTransitionTime"]
    with pytest.raises(errors.ApiError, match="mutually exclusive"):
        _approve(approved, *approved["status"]["conditions"], {"type": "Denied", "status": "True"})
    with pytest.raises(errors.ApiError, match="may not remove a condition of type 'Approved'"):
        _approve(approved)
    with pytest.raises(errors.ApiError, match='Unsupported value: "False"'):
        _approve(old, {"type": "Approved", "status": "False"})
    # Approval cannot add Failed; status cannot add Approved.
    out = _approve(old, {"type": "Failed", "status": "True"})
    assert "conditions" not in out["status"]
    new = copy.deepcopy(old)
    new["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    assert "conditions" not in STRATEGY.prepare_status_update(new, old)["status"]


def test_spec_and_status_survive_a_main_resource_update() -> None:
    old = _stored()
    old["status"] = {"conditions": [{"type": "Denied", "status": "True"}]}
    new = copy.deepcopy(old)
    new["spec"]["signerName"] = "example.com/other"
    new["status"] = {}
    STRATEGY.prepare_update(new, old)
    assert new["spec"] == old["spec"] and new["status"] == old["status"]


def test_certificate_needs_approval_and_is_immutable() -> None:
    old = _stored()
    new = copy.deepcopy(old)
    new["status"]["certificate"] = "Zm9v"
    errs = FieldErrors()
    STRATEGY.validate_status(new, old, errs)
    assert "certificate may only be set if the Approved condition is true" in str(errs.causes)
    approved = _approve(old, {"type": "Approved", "status": "True"})
    approved["status"]["certificate"] = "Zm9v"
    errs = FieldErrors()
    STRATEGY.validate_status(approved, old, errs)
    assert "must contain at least one CERTIFICATE PEM block" in str(errs.causes)


def test_one_condition_per_type() -> None:
    old = _stored()
    twice = {"type": "Failed", "status": "True"}
    new = copy.deepcopy(old)
    new["status"]["conditions"] = [twice, dict(twice)]
    errs = FieldErrors()
    STRATEGY.validate_status(new, old, errs)
    assert 'status.conditions[1].type: Duplicate value: "Failed"' in [
        f"{c['field']}: {c['message']}" for c in errs.causes
    ]
