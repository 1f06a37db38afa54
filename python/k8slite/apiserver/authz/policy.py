"""The bootstrap RBAC policy: upstream's default cluster roles and bindings, as data.

Names, rules and subjects follow upstream's bootstrap policy. One deliberate difference:
upstream runs each controller under its own service account (--use-service-account-
credentials); here the controller manager runs them all with its own identity, so the
system:controller:* roles are bound to the system:kube-controller-manager user as well as
to the service accounts upstream binds them to.
"""

from __future__ import annotations

from k8slite.component.objects import Obj

READ = ("get", "list", "watch")
READ_WRITE = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SCHEDULER = "system:kube-scheduler"
CONTROLLER_MANAGER = "system:kube-controller-manager"
PROXY = "system:kube-proxy"
RBAC_GROUP = "rbac.authorization.k8s.io"


def rule(
    verbs: tuple[str, ...] | str,
    groups: tuple[str, ...] | str,
    resources: tuple[str, ...] | str,
    names: tuple[str, ...] = (),
) -> Obj:
    def listed(v: tuple[str, ...] | str) -> list[str]:
        return [v] if isinstance(v, str) else list(v)

    out: Obj = {"verbs": listed(verbs), "apiGroups": listed(groups), "resources": listed(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def url_rule(verbs: tuple[str, ...] | str, urls: tuple[str, ...]) -> Obj:
    return {
        "verbs": [verbs] if isinstance(verbs, str) else list(verbs),
        "nonResourceURLs": list(urls),
    }


def events_rules() -> list[Obj]:
    return [rule(("create", "update", "patch"), ("", "events.k8s.io"), "events")]


NODE_RULES: list[Obj] = [
    rule("create", "authentication.k8s.io", "tokenreviews"),
    rule("create", "authorization.k8s.io", ("subjectaccessreviews", "localsubjectaccessreviews")),
    rule(READ, "", "services"),
    # The node restriction narrows these to the node's own Node object.
    rule(("create", "get", "list", "watch"), "", "nodes"),
    rule(("update", "patch"), "", ("nodes", "nodes/status")),
    *events_rules(),
    rule(READ, "", "pods"),
    # Mirror pods only, and only pods bound to the node (node restriction).
    rule(("create", "delete"), "", "pods"),
    rule(("update", "patch"), "", "pods/status"),
    rule("create", "", "pods/eviction"),
    # Narrowed by the node authorizer to objects the node's pods reference.
    rule(READ, "", ("secrets", "configmaps")),
    rule("get", "", ("persistentvolumeclaims", "persistentvolumes")),
    rule("get", "", "endpoints"),
    rule(("create", "get", "list", "watch"), "certificates.k8s.io", "certificatesigningrequests"),
    rule(("get", "create", "update", "patch", "delete"), "coordination.k8s.io", "leases"),
    rule("get", "storage.k8s.io", "volumeattachments"),
    rule("create", "", "serviceaccounts/token"),
    rule(("update", "patch"), "", "persistentvolumeclaims/status"),
    rule(READ, "storage.k8s.io", "csidrivers"),
    rule(("get", "create", "update", "patch", "delete"), "storage.k8s.io", "csinodes"),
    rule(READ, "node.k8s.io", "runtimeclasses"),
]

_DISCOVERY_URLS = (
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
)
_PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")

# The resources of the user-facing roles (upstream aggregates them from many fragments).
_VIEW_CORE = (
    "pods",
    "pods/log",
    "pods/status",
    "services",
    "services/status",
    "endpoints",
    "configmaps",
    "persistentvolumeclaims",
    "persistentvolumeclaims/status",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "replicationcontrollers/status",
    "serviceaccounts",
    "events",
    "limitranges",
    "resourcequotas",
    "resourcequotas/status",
    "namespaces",
    "namespaces/status",
    "bindings",
)
_APPS = (
    "deployments",
    "deployments/scale",
    "deployments/status",
    "replicasets",
    "replicasets/scale",
    "replicasets/status",
    "statefulsets",
    "statefulsets/scale",
    "statefulsets/status",
    "daemonsets",
    "daemonsets/status",
    "controllerrevisions",
)
_EDIT_CORE = (
    "pods",
    "pods/attach",
    "pods/exec",
    "pods/portforward",
    "pods/proxy",
    "services",
    "services/proxy",
    "endpoints",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "serviceaccounts",
    "events",
)
_WRITE = ("create", "delete", "deletecollection", "patch", "update")

VIEW_RULES = [
    rule(READ, "", _VIEW_CORE),
    rule(READ, "apps", _APPS),
    rule(READ, ("autoscaling",), "horizontalpodautoscalers"),
    rule(READ, "batch", ("jobs", "cronjobs", "jobs/status", "cronjobs/status")),
    rule(READ, "discovery.k8s.io", "endpointslices"),
    rule(READ, "policy", ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    rule(READ, "networking.k8s.io", ("ingresses", "ingresses/status", "networkpolicies")),
    rule(READ, "coordination.k8s.io", "leases"),
]
EDIT_RULES = [
    *VIEW_RULES,
    rule(READ, "", "secrets"),
    rule(_WRITE, "", _EDIT_CORE),
    rule("create", "", ("pods/eviction", "serviceaccounts/token")),
    rule(
        ("get",),
        "",
        ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "services/proxy"),
    ),
    rule("impersonate", "", "serviceaccounts"),
    rule(_WRITE, "apps", _APPS[:-1]),
    rule(_WRITE, "autoscaling", "horizontalpodautoscalers"),
    rule(_WRITE, "batch", ("jobs", "cronjobs")),
    rule(_WRITE, "discovery.k8s.io", "endpointslices"),
    rule(_WRITE, "policy", "poddisruptionbudgets"),
    rule(_WRITE, "networking.k8s.io", ("ingresses", "networkpolicies")),
    rule(_WRITE, "coordination.k8s.io", "leases"),
]
ADMIN_RULES = [
    *EDIT_RULES,
    rule("create", "authorization.k8s.io", "localsubjectaccessreviews"),
    rule(READ_WRITE, RBAC_GROUP, ("roles", "rolebindings")),
]

_CERTS = "certificates.k8s.io"
_CSRS = "certificatesigningrequests"
_SIGNERS = (
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/legacy-unknown",
)
_CONTROLLER_ROLES: dict[str, list[Obj]] = {
    "attachdetach-controller": [
        rule(READ, "", ("persistentvolumes", "persistentvolumeclaims", "nodes", "pods")),
        rule(("patch", "update"), "", "nodes/status"),
        rule(("create", "delete", "get", "list", "watch"), "storage.k8s.io", "volumeattachments"),
        rule(READ, "storage.k8s.io", ("csidrivers", "csinodes")),
    ],
    # csrapproving, csrsigning and csrcleaner (upstream's one role for the three).
    "certificate-controller": [
        rule(("delete", "get", "list", "watch"), _CERTS, _CSRS),
        rule("update", _CERTS, (f"{_CSRS}/status", f"{_CSRS}/approval")),
        # And kubelet-serving: K8s-Lite's csrapproving approves a node's own serving
        # certificate with checked SANs (controllers/certificates.py); upstream's does not.
        rule(
            "approve",
            _CERTS,
            "signers",
            ("kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kubelet-serving"),
        ),
        rule("sign", _CERTS, "signers", _SIGNERS),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"),
    ],
    "clusterrole-aggregation-controller": [
        rule(("escalate", "get", "list", "patch", "update", "watch"), RBAC_GROUP, "clusterroles"),
    ],
    "cronjob-controller": [
        rule(("get", "list", "update", "watch"), "batch", "cronjobs"),
        rule(("create", "delete", "get", "list", "patch", "update", "watch"), "batch", "jobs"),
        rule("update", "batch", ("cronjobs/status", "cronjobs/finalizers")),
        rule(("delete", "list"), "", "pods"),
    ],
    "daemon-set-controller": [
        rule(READ, "apps", "daemonsets"),
        rule("update", "apps", ("daemonsets/status", "daemonsets/finalizers")),
        rule(READ, "", "nodes"),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"),
        rule("create", "", "pods/binding"),
        rule(
            ("create", "delete", "get", "list", "patch", "update", "watch"),
            "apps",
            "controllerrevisions",
        ),
    ],
    "deployment-controller": [
        rule(("get", "list", "update", "watch"), "apps", "deployments"),
        rule("update", "apps", ("deployments/status", "deployments/finalizers")),
        rule(
            ("create", "delete", "get", "list", "patch", "update", "watch"), "apps", "replicasets"
        ),
        rule(("get", "list", "update", "watch"), "", "pods"),
    ],
    "disruption-controller": [
        rule(READ, "apps", ("deployments", "replicasets", "statefulsets")),
        rule(READ, "", ("replicationcontrollers", "pods")),
        rule(READ, "policy", "poddisruptionbudgets"),
        rule("get", "*", "*/scale"),
        rule("update", "policy", "poddisruptionbudgets/status"),
        rule("patch", "", "pods/status"),
    ],
    "endpoint-controller": [
        rule(READ, "", ("services", "pods")),
        rule(("create", "delete", "get", "list", "update"), "", "endpoints"),
        rule("create", "", "endpoints/restricted"),
    ],
    "endpointslice-controller": [
        rule(READ, "", ("services", "pods", "nodes")),
        rule("update", "", "services/finalizers"),
        rule(("create", "delete", "get", "list", "update"), "discovery.k8s.io", "endpointslices"),
    ],
    "endpointslicemirroring-controller": [
        rule(READ, "", ("services", "endpoints")),
        rule("update", "", ("services/finalizers", "endpoints/finalizers")),
        rule(("create", "delete", "get", "list", "update"), "discovery.k8s.io", "endpointslices"),
    ],
    "ephemeral-volume-controller": [
        rule(READ, "", "pods"),
        rule("update", "", "pods/finalizers"),
        rule(("create", "get", "list", "watch"), "", "persistentvolumeclaims"),
    ],
    "generic-garbage-collector": [
        rule(("delete", "get", "list", "patch", "update", "watch"), "*", "*"),
    ],
    "horizontal-pod-autoscaler": [
        rule(READ, "autoscaling", "horizontalpodautoscalers"),
        rule("update", "autoscaling", "horizontalpodautoscalers/status"),
        rule(("get", "update"), "*", "*/scale"),
        rule("list", "", "pods"),
        rule("list", "metrics.k8s.io", "pods"),
    ],
    "job-controller": [
        rule(("get", "list", "patch", "update", "watch"), "batch", "jobs"),
        rule("update", "batch", ("jobs/status", "jobs/finalizers")),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"),
    ],
    "namespace-controller": [
        rule(("delete", "get", "list", "watch"), "", "namespaces"),
        rule("update", "", ("namespaces/finalize", "namespaces/status")),
        rule(("delete", "deletecollection", "get", "list"), "*", "*"),
    ],
    "node-controller": [
        rule(("delete", "get", "list", "patch", "update"), "", "nodes"),
        rule(("patch", "update"), "", ("nodes/status", "pods/status")),
        rule(("delete", "list"), "", "pods"),
    ],
    "persistent-volume-binder": [
        rule(("create", "delete", "get", "list", "update", "watch"), "", "persistentvolumes"),
        rule("update", "", ("persistentvolumes/status", "persistentvolumeclaims/status")),
        rule(("get", "list", "update", "watch"), "", "persistentvolumeclaims"),
        rule(("create", "delete", "get", "list", "watch"), "", "pods"),
        rule(READ, "storage.k8s.io", "storageclasses"),
        rule(("create", "delete", "get"), "", ("endpoints", "services")),
        rule("get", "", "secrets"),
        rule(("get", "list"), "", "nodes"),
    ],
    "pod-garbage-collector": [
        rule(("delete", "list", "watch"), "", "pods"),
        rule(READ, "", "nodes"),
        rule("patch", "", "pods/status"),
    ],
    "pv-protection-controller": [
        rule(("get", "list", "update", "watch"), "", "persistentvolumes"),
    ],
    "pvc-protection-controller": [
        rule(("get", "list", "update", "watch"), "", "persistentvolumeclaims"),
        rule(READ, "", "pods"),
    ],
    "replicaset-controller": [
        rule(("get", "list", "update", "watch"), "apps", "replicasets"),
        rule("update", "apps", ("replicasets/status", "replicasets/finalizers")),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"),
    ],
    "replication-controller": [
        rule(("get", "list", "update", "watch"), "", "replicationcontrollers"),
        rule("update", "", ("replicationcontrollers/status", "replicationcontrollers/finalizers")),
        rule(("create", "delete", "list", "patch", "watch"), "", "pods"),
    ],
    "resourcequota-controller": [
        rule(("list", "watch"), "*", "*"),
        rule("update", "", "resourcequotas/status"),
    ],
    "root-ca-cert-publisher": [
        rule(("create", "update"), "", "configmaps"),
    ],
    "route-controller": [
        rule(("list", "watch"), "", "nodes"),
        rule("patch", "", "nodes/status"),
    ],
    "service-account-controller": [
        rule("create", "", "serviceaccounts"),
    ],
    "service-controller": [
        rule(READ, "", "services"),
        rule(("patch", "update"), "", "services/status"),
        rule(("list", "watch"), "", "nodes"),
    ],
    "statefulset-controller": [
        rule(READ, "", "pods"),
        rule(READ, "apps", "statefulsets"),
        rule("update", "apps", ("statefulsets/status", "statefulsets/finalizers")),
        rule(("create", "delete", "get", "patch", "update"), "", "pods"),
        rule(
            ("create", "delete", "get", "list", "patch", "update", "watch"),
            "apps",
            "controllerrevisions",
        ),
        rule(("create", "get"), "", "persistentvolumeclaims"),
        rule(("update", "delete"), "", "persistentvolumeclaims"),
    ],
    "ttl-after-finished-controller": [
        rule(("delete", "get", "list", "watch"), "batch", "jobs"),
    ],
    "ttl-controller": [
        rule(("list", "patch", "update", "watch"), "", "nodes"),
    ],
}


def cluster_roles() -> dict[str, list[Obj]]:
    roles: dict[str, list[Obj]] = {
        "cluster-admin": [rule("*", "*", "*"), url_rule("*", ("*",))],
        "admin": ADMIN_RULES,
        "edit": EDIT_RULES,
        "view": VIEW_RULES,
        "system:discovery": [url_rule("get", _DISCOVERY_URLS)],
        "system:public-info-viewer": [url_rule("get", _PUBLIC_URLS)],
        "system:basic-user": [
            rule(
                "create",
                "authorization.k8s.io",
                ("selfsubjectaccessreviews", "selfsubjectrulesreviews"),
            ),
            rule("create", "authentication.k8s.io", "selfsubjectreviews"),
        ],
        "system:monitoring": [
            url_rule(
                "get",
                (
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ),
            )
        ],
        "system:service-account-issuer-discovery": [
            url_rule(
                "get",
                (
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ),
            )
        ],
        "system:auth-delegator": [
            rule("create", "authentication.k8s.io", "tokenreviews"),
            rule("create", "authorization.k8s.io", "subjectaccessreviews"),
        ],
        "system:node": NODE_RULES,
        # TLS bootstrap (upstream's names): bootstrappers create CSRs; creating the
        # nodeclient/selfnodeclient subresources is what csrapproving checks.
        "system:node-bootstrapper": [rule(("create", "get", "list", "watch"), _CERTS, _CSRS)],
        f"system:certificates.k8s.io:{_CSRS}:nodeclient": [
            rule("create", _CERTS, f"{_CSRS}/nodeclient")
        ],
        f"system:certificates.k8s.io:{_CSRS}:selfnodeclient": [
            rule("create", _CERTS, f"{_CSRS}/selfnodeclient")
        ],
        "system:certificates.k8s.io:kube-apiserver-client-approver": [
            rule("approve", _CERTS, "signers", (_SIGNERS[0],))
        ],
        "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver": [
            rule("approve", _CERTS, "signers", (_SIGNERS[1],))
        ],
        "system:certificates.k8s.io:kubelet-serving-approver": [
            rule("approve", _CERTS, "signers", (_SIGNERS[2],))
        ],
        "system:certificates.k8s.io:legacy-unknown-approver": [
            rule("approve", _CERTS, "signers", (_SIGNERS[3],))
        ],
        "system:node-proxier": [
            rule(("list", "watch"), "", ("services", "endpoints")),
            rule(READ, "", "nodes"),
            *events_rules(),
            rule(("list", "watch"), "discovery.k8s.io", "endpointslices"),
        ],
        # Upstream's kube-dns role has endpoints and services; CoreDNS's own role adds
        # what its kubernetes plugin watches, as k8slite-dns does.
        "system:kube-dns": [
            rule(("list", "watch"), "", ("endpoints", "services", "pods", "namespaces")),
            rule(("list", "watch"), "discovery.k8s.io", "endpointslices"),
        ],
        # What upstream's metrics-server manifest grants it, and who may read its API.
        "system:metrics-server": [
            rule("get", "", "nodes/metrics"),
            rule(READ, "", ("pods", "nodes")),
        ],
        "system:aggregated-metrics-reader": [
            rule(READ, "metrics.k8s.io", ("pods", "nodes")),
        ],
        "system:kube-scheduler": [
            *events_rules(),
            rule("create", "coordination.k8s.io", "leases"),
            rule(("get", "update"), "coordination.k8s.io", "leases", ("kube-scheduler",)),
            rule(READ, "", "nodes"),
            rule(("delete", "get", "list", "watch"), "", "pods"),
            rule("create", "", ("bindings", "pods/binding")),
            rule(("patch", "update"), "", "pods/status"),
            rule(
                READ,
                "",
                (
                    "replicationcontrollers",
                    "services",
                    "namespaces",
                    "persistentvolumeclaims",
                    "persistentvolumes",
                ),
            ),
            rule(READ, "apps", ("replicasets", "statefulsets")),
            rule(READ, "policy", "poddisruptionbudgets"),
            rule("create", "authentication.k8s.io", "tokenreviews"),
            rule("create", "authorization.k8s.io", "subjectaccessreviews"),
            rule(READ, "storage.k8s.io", ("csinodes", "csidrivers", "csistoragecapacities")),
        ],
        "system:volume-scheduler": [
            rule(
                ("get", "list", "patch", "update", "watch"),
                "",
                ("persistentvolumes", "persistentvolumeclaims"),
            ),
            rule(READ, "storage.k8s.io", "storageclasses"),
        ],
        "system:kube-controller-manager": [
            *events_rules(),
            rule("create", "coordination.k8s.io", "leases"),
            rule(("get", "update"), "coordination.k8s.io", "leases", ("kube-controller-manager",)),
            rule("create", "", ("secrets", "serviceaccounts")),
            rule("delete", "", "secrets"),
            rule("get", "", ("namespaces", "secrets", "serviceaccounts")),
            rule("update", "", ("secrets", "serviceaccounts")),
            rule("create", "authentication.k8s.io", "tokenreviews"),
            rule("create", "authorization.k8s.io", "subjectaccessreviews"),
            # Every shared informer lists and watches.
            rule(("list", "watch"), "*", "*"),
            rule("create", "", "serviceaccounts/token"),
        ],
    }
    for name, rules in _CONTROLLER_ROLES.items():
        roles[f"system:controller:{name}"] = [*rules, *events_rules()]
    return roles


_METRICS_SERVER = {"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}


def _user(name: str) -> Obj:
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": name}


def _group(name: str) -> Obj:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def cluster_role_bindings() -> dict[str, tuple[str, list[Obj]]]:
    """Binding name -> (cluster role, subjects)."""
    bindings: dict[str, tuple[str, list[Obj]]] = {
        "cluster-admin": ("cluster-admin", [_group(MASTERS)]),
        "system:basic-user": ("system:basic-user", [_group(AUTHENTICATED)]),
        "system:discovery": ("system:discovery", [_group(AUTHENTICATED)]),
        "system:public-info-viewer": (
            "system:public-info-viewer",
            [_group(AUTHENTICATED), _group(UNAUTHENTICATED)],
        ),
        "system:monitoring": ("system:monitoring", [_group("system:monitoring")]),
        "system:service-account-issuer-discovery": (
            "system:service-account-issuer-discovery",
            [_group("system:serviceaccounts")],
        ),
        # Nodes get these rules from the node authorizer; upstream leaves this unbound too.
        "system:node": ("system:node", []),
        "system:node-proxier": ("system:node-proxier", [_user(PROXY)]),
        "system:kube-dns": (
            "system:kube-dns",
            [{"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"}],
        ),
        "system:metrics-server": ("system:metrics-server", [_METRICS_SERVER]),
        "metrics-server:system:auth-delegator": ("system:auth-delegator", [_METRICS_SERVER]),
        "system:kube-scheduler": ("system:kube-scheduler", [_user(SCHEDULER)]),
        "system:volume-scheduler": ("system:volume-scheduler", [_user(SCHEDULER)]),
        "system:kube-controller-manager": (
            "system:kube-controller-manager",
            [_user(CONTROLLER_MANAGER)],
        ),
    }
    for name in _CONTROLLER_ROLES:
        role = f"system:controller:{name}"
        bindings[role] = (
            role,
            [
                {"kind": "ServiceAccount", "name": name, "namespace": "kube-system"},
                _user(CONTROLLER_MANAGER),
            ],
        )
    return bindings


def namespaced_roles() -> dict[tuple[str, str], list[Obj]]:
    return {
        ("kube-system", "extension-apiserver-authentication-reader"): [
            rule(READ, "", "configmaps", ("extension-apiserver-authentication",))
        ],
        ("kube-system", "system::leader-locking-kube-controller-manager"): [
            rule("watch", "", "configmaps"),
            rule(("get", "update"), "", "configmaps", ("kube-controller-manager",)),
        ],
        ("kube-system", "system::leader-locking-kube-scheduler"): [
            rule("watch", "", "configmaps"),
            rule(("get", "update"), "", "configmaps", ("kube-scheduler",)),
        ],
        # The bootstrap-token controllers' roles, as upstream's namespace policy.
        ("kube-system", "system:controller:bootstrap-signer"): [rule(READ, "", "secrets")],
        ("kube-system", "system:controller:token-cleaner"): [
            rule(("delete", "get", "list", "watch"), "", "secrets"),
            *events_rules(),
        ],
        ("kube-public", "system:controller:bootstrap-signer"): [
            rule(READ, "", "configmaps"),
            rule("update", "", "configmaps", ("cluster-info",)),
            *events_rules(),
        ],
    }


def role_bindings() -> dict[tuple[str, str], tuple[str, list[Obj]]]:
    return {
        ("kube-system", "system::extension-apiserver-authentication-reader"): (
            "extension-apiserver-authentication-reader",
            [_user(CONTROLLER_MANAGER), _user(SCHEDULER)],
        ),
        ("kube-system", "system::leader-locking-kube-controller-manager"): (
            "system::leader-locking-kube-controller-manager",
            [_user(CONTROLLER_MANAGER)],
        ),
        ("kube-system", "system::leader-locking-kube-scheduler"): (
            "system::leader-locking-kube-scheduler",
            [_user(SCHEDULER)],
        ),
        **{
            (ns, f"system:controller:{name}"): (
                f"system:controller:{name}",
                [
                    {"kind": "ServiceAccount", "name": name, "namespace": "kube-system"},
                    _user(CONTROLLER_MANAGER),
                ],
            )
            for ns, name in (
                ("kube-system", "bootstrap-signer"),
                ("kube-system", "token-cleaner"),
                ("kube-public", "bootstrap-signer"),
            )
        },
    }
