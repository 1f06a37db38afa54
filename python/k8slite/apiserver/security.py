"""Assemble the API server's security: authorizers, admission checks, reviews, the outer chain."""

from __future__ import annotations

from pathlib import Path

from k8slite.apiserver.app import ApiServerApp
from k8slite.apiserver.audit import AuditLog
from k8slite.apiserver.authn import Authenticator
from k8slite.apiserver.authz.authorizer import Authorizer
from k8slite.apiserver.authz.bootstrap import reconcile
from k8slite.apiserver.authz.escalation import EscalationCheck
from k8slite.apiserver.authz.noderestriction import NodeRestriction
from k8slite.apiserver.authz.reviews import reviews
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.filters import SecureApp
from k8slite.apiserver.limits import (
    MAX_MUTATING_REQUESTS_INFLIGHT,
    MAX_REQUESTS_INFLIGHT,
    REQUEST_TIMEOUT,
    InflightLimiter,
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
    """The app behind authentication, limits, audit and authorization, policy reconciled.

    Call after the caches are warm: the node graph is built from the cached pods.
    """
    authorizer = Authorizer(core)
    await reconcile(core)
    app.resources.filters += [
        authorizer.filter,
        NodeRestriction(core, authorizer.graph).filter,
        EscalationCheck(core, authorizer).filter,
        check_body_depth,
    ]
    app.resources.virtual.update(reviews(authorizer))
    audit = AuditLog(audit_log_path) if audit_log_path else None
    limiter = InflightLimiter(max_requests_inflight, max_mutating_requests_inflight)
    return SecureApp(app, authorizer, limiter, audit, request_timeout, authn)
