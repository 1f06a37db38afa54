"""Assemble the API server's security: authorizers, admission checks, reviews, the outer chain."""

from __future__ import annotations

from pathlib import Path

from k8slite.apiserver.app import ApiServerApp
from k8slite.apiserver.audit import AuditLog
from k8slite.apiserver.authn import Authenticator
from k8slite.apiserver.authz.authorizer import Authorizer
from k8slite.apiserver.authz.bootstrap import reconcile
from k8slite.apiserver.authz.csradmission import CertificateAdmission
from k8slite.apiserver.authz.escalation import EscalationCheck
from k8slite.apiserver.authz.noderestriction import NodeRestriction
from k8slite.apiserver.authz.reviews import reviews
from k8slite.apiserver.bootstrap import ensure_flowcontrol_objects, stored
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.filters import SecureApp
from k8slite.apiserver.flowcontrol.controller import FlowControl
from k8slite.apiserver.limits import (
    MAX_MUTATING_REQUESTS_INFLIGHT,
    MAX_REQUESTS_INFLIGHT,
    REQUEST_TIMEOUT,
    check_body_depth,
)


async def secure_app(
    app: ApiServerApp,
    core: ApiCore,
    *,
    audit_log_path: Path | None = None,
    max_requests_inflight: int = MAX_REQUESTS_INFLIGHT,
    max_mutating_requests_inflight: int = MAX_MUTATING_REQUESTS_INFLIGHT,
    request_timeout: float = REQUEST_TIMEOUT,
    authn: Authenticator | None = None,
) -> SecureApp:
    """The app behind authentication, priority and fairness, audit and authorization.

    Policy (RBAC, FlowSchemas, priority levels) is reconciled first.

    Call after the caches are warm: the node graph is built from the cached pods.
    """
    authorizer = Authorizer(core)
    await reconcile(core)
    app.resources.filters += [
        authorizer.filter,
        NodeRestriction(core, authorizer.graph).filter,
        EscalationCheck(core, authorizer).filter,
        CertificateAdmission(authorizer).filter,
        check_body_depth,
    ]
    app.resources.virtual.update(reviews(authorizer))
    audit = AuditLog(audit_log_path) if audit_log_path else None
    await ensure_flowcontrol_objects(core)
    flowcontrol = FlowControl(
        stored(core, "flowschemas"),
        stored(core, "prioritylevelconfigurations"),
        max_requests_inflight + max_mutating_requests_inflight,
        # Upstream lets a request wait in its queue for a quarter of its deadline.
        request_timeout / 4,
        app.metrics,
    )
    return SecureApp(app, authorizer, flowcontrol, app.metrics, audit, request_timeout, authn)
