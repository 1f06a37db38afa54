"""The real kubectl v1.35 against the API server: what it prints, as upstream prints it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conformance.conftest import Kubectl, rows

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{tier: web, extra: remove-me}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: nginx:1.25
        env:
        - {{name: A, value: "1"}}
        - {{name: B, value: "2"}}
      - name: side
        image: busybox:1.36
"""


def set_status(http: httpx.Client, path: str, status: dict[str, Any]) -> None:
    r = http.patch(
        path + "/status",
        content=json.dumps({"status": status}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text


def make_pod(
    http: httpx.Client,
    ns: str,
    name: str,
    status: dict[str, Any] | None = None,
    init: bool = False,
    **spec: Any,
) -> str:
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }
    if init:
        body["spec"]["initContainers"] = [{"name": "i", "image": "busybox"}]
    r = http.post(f"/api/v1/namespaces/{ns}/pods", json=body)
    assert r.status_code == 201, r.text
    path = f"/api/v1/namespaces/{ns}/pods/{name}"
    if status:
        set_status(http, path, status)
    return path


# ------------------------------------------------------------------ discovery


def test_api_resources_and_versions(kubectl: Kubectl) -> None:
    out = rows(kubectl("api-resources").stdout)
    assert out[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    table = {r[0]: r for r in out[1:]}
    assert table["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert table["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert table["nodes"] == ["nodes", "no", "v1", "false", "Node"]
    for short, name in (
        ("rs", "replicasets"),
        ("svc", "services"),
        ("ep", "endpoints"),
        ("cm", "configmaps"),
        ("ns", "namespaces"),
        ("ev", "events"),
        ("sa", "serviceaccounts"),
    ):
        assert short in table[name]
    wide = kubectl("api-resources", "-o", "wide").stdout
    assert "create,delete,deletecollection,get,list,patch,update,watch" in wide
    assert kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split() >= [
        "namespaces",
        "nodes",
    ]
    versions = kubectl("api-versions").stdout.split()
    assert {"v1", "apps/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1"} <= set(versions)
    assert "Server Version: v1.35" in kubectl("version").stdout


def test_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.strategy").stdout
    assert out.startswith(
        "GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n\n"
        "FIELD: strategy <DeploymentStrategy>\n"
    )
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out
    assert "type\t<string>\n  enum: Recreate, RollingUpdate" in out
    pods = kubectl("explain", "pods.spec.containers").stdout
    assert "FIELD: containers <[]Container>" in pods
    assert "name\t<string> -required-" in pods
    missing = kubectl("explain", "deployment.spec.nope", check=False)
    assert missing.returncode == 1
    assert 'field "nope" does not exist' in missing.stderr


def test_explain_plaintext_openapiv2(kubectl: Kubectl) -> None:
    """The v2 template reads /openapi/v2 as gnostic protobuf."""
    out = kubectl("explain", "pods.spec.containers", "--output", "plaintext-openapiv2").stdout
    assert out.startswith("KIND:     Pod\nVERSION:  v1\n\nRESOURCE: containers <[]Object>\n")
    assert "   name\t<string> -required-\n" in out
    assert "   ports\t<[]Object>\n" in out
    field = kubectl("explain", "deployment.spec.replicas", "--output", "plaintext-openapiv2").stdout
    assert field.startswith(
        "KIND:     Deployment\nVERSION:  apps/v1\n\nFIELD:    replicas <integer>\n"
    )


# ----------------------------------------------------- create generators, get


def test_create_generators_and_their_tables(kubectl: Kubectl, ns: str) -> None:
    assert (
        kubectl(
            "-n",
            ns,
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=2",
            "--port=80",
        ).stdout
        == "deployment.apps/web created\n"
    )
    kubectl("-n", ns, "create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=2")
    kubectl("-n", ns, "create", "secret", "generic", "sec", "--from-literal=pw=x")
    kubectl("-n", ns, "create", "service", "clusterip", "svc", "--tcp=80:8080")
    kubectl("-n", ns, "create", "serviceaccount", "robot")
    deploy = rows(kubectl("-n", ns, "get", "deployments").stdout)
    assert deploy[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy[1][:4] == ["web", "0/2", "0", "0"]
    wide = rows(kubectl("-n", ns, "get", "deploy", "-o", "wide").stdout)
    assert wide[0] == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert wide[1][5:] == ["nginx", "nginx:1.25", "app=web"]
    cm = rows(kubectl("-n", ns, "get", "cm", "cfg").stdout)
    assert cm[0] == ["NAME", "DATA", "AGE"] and cm[1][:2] == ["cfg", "2"]
    sec = rows(kubectl("-n", ns, "get", "secret", "sec").stdout)
    assert sec[0] == ["NAME", "TYPE", "DATA", "AGE"] and sec[1][:3] == ["sec", "Opaque", "1"]
    svc = rows(kubectl("-n", ns, "get", "svc", "svc").stdout)
    assert svc[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc[1][1] == "ClusterIP" and svc[1][3:5] == ["<none>", "80/TCP"]
    sa = rows(kubectl("-n", ns, "get", "sa", "robot").stdout)
    assert sa[0] == ["NAME", "SECRETS", "AGE"] and sa[1][:2] == ["robot", "0"]
    nss = rows(kubectl("get", "ns", ns).stdout)
    assert nss[0] == ["NAME", "STATUS", "AGE"] and nss[1][:2] == [ns, "Active"]
    cfg = json.loads(
        kubectl("-n", ns, "get", "cm", "cfg", "-o", "json", "--show-managed-fields").stdout
    )
    assert cfg["data"] == {"a": "1", "b": "2"}
    managed = cfg["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"]) for m in managed] == [("kubectl-create", "Update")]


def test_create_generators_of_every_served_kind(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    """kubectl's typed clients send these as protobuf: each must be decoded, not 415."""
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=gen.example", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    viewer, aggregate = f"viewer-{ns}", f"aggregate-{ns}"
    made = [
        (
            ["role", "pod-reader", "--verb=get,list", "--resource=pods", "--resource-name=a"],
            "role.rbac.authorization.k8s.io/pod-reader",
        ),
        (
            [
                "rolebinding",
                "pod-reader",
                "--role=pod-reader",
                "--user=bob",
                "--group=team",
                f"--serviceaccount={ns}:robot",
            ],
            "rolebinding.rbac.authorization.k8s.io/pod-reader",
        ),
        (
            ["clusterrole", viewer, "--verb=get", "--resource=nodes", "--non-resource-url=/x"],
            f"clusterrole.rbac.authorization.k8s.io/{viewer}",
        ),
        (
            ["clusterrole", aggregate, "--aggregation-rule=tier=web"],
            f"clusterrole.rbac.authorization.k8s.io/{aggregate}",
        ),
        (
            ["clusterrolebinding", viewer, f"--clusterrole={viewer}", "--user=carol"],
            f"clusterrolebinding.rbac.authorization.k8s.io/{viewer}",
        ),
        (
            ["poddisruptionbudget", "pdb", "--selector=app=x", "--min-available=1"],
            "poddisruptionbudget.policy/pdb",
        ),
        (["service", "nodeport", "np", "--tcp=80:8080"], "service/np"),
        (["service", "loadbalancer", "lb", "--tcp=80:8080"], "service/lb"),
        (["service", "externalname", "ext", "--external-name=db.example"], "service/ext"),
        (["secret", "tls", "tls", f"--cert={cert}", f"--key={key}"], "secret/tls"),
        (
            [
                "secret",
                "docker-registry",
                "reg",
                "--docker-username=u",
                "--docker-password=p",
                "--docker-server=registry.example",
            ],
            "secret/reg",
        ),
    ]
    for args, name in made:
        done = kubectl("-n", ns, "create", *args, check=False)
        assert (done.returncode, done.stdout) == (0, f"{name} created\n"), done.stderr

    def get(*args: str) -> dict[str, Any]:
        return json.loads(kubectl("-n", ns, "get", *args, "-o", "json").stdout)  # type: ignore[no-any-return]

    assert get("role", "pod-reader")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"], "verbs": ["get", "list"]}
    ]
    binding = get("rolebinding", "pod-reader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pod-reader",
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": ns},
    ]
    assert get("clusterrole", viewer)["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"nonResourceURLs": ["/x"], "verbs": ["get"]},
    ]
    assert get("clusterrole", aggregate)["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"tier": "web"}}]
    }
    assert get("clusterrolebinding", viewer)["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}
    ]

    # The decoded objects are what RBAC enforces.
    def can(*args: str) -> str:
        return kubectl("auth", "can-i", *args, check=False).stdout.strip()

    # The rule names pod "a": get of it, not of another pod, nor a list (it has no name).
    assert can("get", "pods/a", "-n", ns, "--as=bob") == "yes"
    assert can("get", "pods/b", "-n", ns, "--as=bob") == "no"
    assert can("list", "pods", "-n", ns, "--as=bob") == "no"
    assert can("get", "nodes", "--as=carol") == "yes"
    assert get("service", "np")["spec"]["type"] == "NodePort"
    assert get("service", "lb")["spec"]["type"] == "LoadBalancer"
    assert get("service", "ext")["spec"]["externalName"] == "db.example"
    assert get("secret", "tls")["type"] == "kubernetes.io/tls"
    assert get("secret", "reg")["type"] == "kubernetes.io/dockerconfigjson"
    assert get("pdb", "pdb")["spec"]["minAvailable"] == 1
    for args in (
        ["clusterrolebinding", viewer],
        ["clusterrole", viewer],
        ["clusterrole", aggregate],
    ):
        kubectl("delete", *args)


def test_pod_status_column(kubectl: Kubectl, ns: str, http: httpx.Client) -> None:
    running = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "podIP": "10.0.0.7",
        "podIPs": [{"ip": "10.0.0.7"}],
        "containerStatuses": [
            {
                "name": "c",
                "ready": True,
                "restartCount": 2,
                "image": "busybox",
                "imageID": "",
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2020-01-01T00:00:00Z"}},
                "state": {"running": {"startedAt": "2020-01-01T00:00:00Z"}},
            }
        ],
    }
    make_pod(http, ns, "running", running, nodeName="node1")
    make_pod(http, ns, "pending")
    make_pod(
        http,
        ns,
        "creating",
        {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": False,
                    "restartCount": 0,
                    "image": "busybox",
                    "imageID": "",
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
            ],
        },
    )
    make_pod(
        http,
        ns,
        "crash",
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": False,
                    "restartCount": 5,
                    "image": "busybox",
                    "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        },
    )
    make_pod(
        http,
        ns,
        "done",
        {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": False,
                    "restartCount": 0,
                    "image": "busybox",
                    "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        },
    )
    make_pod(
        http,
        ns,
        "init",
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "i",
                    "ready": False,
                    "restartCount": 0,
                    "image": "busybox",
                    "imageID": "",
                    "state": {"running": {}},
                }
            ],
        },
        init=True,
    )
    out = rows(kubectl("-n", ns, "get", "pods").stdout)
    assert out[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    status = {r[0]: r[1:4] for r in out[1:]}
    assert status["running"][:2] == ["1/1", "Running"]
    assert status["running"][2].startswith("2 (") and status["running"][2].endswith(" ago)")
    assert status["pending"] == ["0/1", "Pending", "0"]
    assert status["creating"] == ["0/1", "ContainerCreating", "0"]
    assert status["crash"] == ["0/1", "CrashLoopBackOff", "5"]
    assert status["done"] == ["0/1", "Completed", "0"]
    assert status["init"] == ["0/1", "Init:0/1", "0"]
    wide = rows(kubectl("-n", ns, "get", "pod", "running", "-o", "wide").stdout)
    assert wide[0] == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert wide[1][-4:] == ["10.0.0.7", "node1", "<none>", "<none>"]
    http.patch(
        f"/api/v1/namespaces/{ns}/pods/running",
        content=json.dumps({"metadata": {"finalizers": ["test/keep"]}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    kubectl("-n", ns, "delete", "pod", "running", "--wait=false")
    gone = rows(kubectl("-n", ns, "get", "pod", "running").stdout)
    assert gone[1][2] == "Terminating"
    http.patch(
        f"/api/v1/namespaces/{ns}/pods/running",
        content=json.dumps({"metadata": {"finalizers": None}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )


def test_nodes_events_leases_endpoints_tables(
    kubectl: Kubectl, ns: str, http: httpx.Client
) -> None:
    node = f"node-{ns[-4:]}"
    r = http.post(
        "/api/v1/nodes",
        json={"metadata": {"name": node, "labels": {"node-role.kubernetes.io/control-plane": ""}}},
    )
    assert r.status_code == 201, r.text
    set_status(
        http,
        f"/api/v1/nodes/{node}",
        {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}],
            "nodeInfo": {
                "kubeletVersion": "v1.35.0",
                "osImage": "Debian",
                "kernelVersion": "6.1",
                "containerRuntimeVersion": "docker://27",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    )
    out = rows(kubectl("get", "node", node, "-o", "wide").stdout)
    assert out[0] == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    assert out[1][:3] == [node, "Ready", "control-plane"]
    assert out[1][4:] == ["v1.35.0", "192.168.1.5", "<none>", "Debian", "6.1", "docker://27"]
    kubectl("cordon", node)
    assert rows(kubectl("get", "node", node).stdout)[1][1] == "Ready,SchedulingDisabled"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = http.post(
        f"/api/v1/namespaces/{ns}/events",
        json={
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
            "reason": "Scheduled",
            "message": "Successfully assigned",
            "type": "Normal",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "default-scheduler"},
        },
    )
    assert r.status_code == 201, r.text
    ev = rows(kubectl("-n", ns, "get", "events").stdout)
    assert ev[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ev[1][1:] == ["Normal", "Scheduled", "pod/p", "Successfully assigned"]
    http.post(
        f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        json={"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}},
    )
    lease = rows(kubectl("-n", ns, "get", "leases").stdout)
    assert lease[0] == ["NAME", "HOLDER", "AGE"] and lease[1][:2] == ["l", "me"]
    http.post(
        f"/api/v1/namespaces/{ns}/endpoints",
        json={
            "metadata": {"name": "ep"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
        },
    )
    ep = rows(kubectl("-n", ns, "get", "endpoints").stdout)
    assert ep[0] == ["NAME", "ENDPOINTS", "AGE"] and ep[1][:2] == ["ep", "10.0.0.1:80"]


def test_output_formats_labels_and_annotations(kubectl: Kubectl, ns: str) -> None:
    kubectl("-n", ns, "create", "configmap", "c1", "--from-literal=k=v")
    assert kubectl("-n", ns, "label", "cm", "c1", "tier=db").stdout == "configmap/c1 labeled\n"
    assert kubectl("-n", ns, "annotate", "cm", "c1", "note=hi").stdout == "configmap/c1 annotated\n"
    assert kubectl("-n", ns, "get", "cm", "c1", "-o", "name").stdout == "configmap/c1\n"
    assert (
        kubectl("-n", ns, "get", "cm", "c1", "-o", "jsonpath={.metadata.labels.tier}").stdout
        == "db"
    )
    cols = rows(
        kubectl(
            "-n",
            ns,
            "get",
            "cm",
            "-o",
            "custom-columns=NAME:.metadata.name,NOTE:.metadata.annotations.note",
        ).stdout
    )
    assert cols == [["NAME", "NOTE"], ["c1", "hi"]]
    shown = rows(kubectl("-n", ns, "get", "cm", "c1", "--show-labels", "-L", "tier").stdout)
    assert shown[0] == ["NAME", "DATA", "AGE", "TIER", "LABELS"]
    assert shown[1][-2:] == ["db", "tier=db"]
    as_yaml = kubectl("-n", ns, "get", "cm", "c1", "-o", "yaml").stdout
    assert "kind: ConfigMap" in as_yaml and "managedFields" not in as_yaml
    kubectl("-n", ns, "label", "cm", "c1", "tier-")
    assert "tier" not in kubectl("-n", ns, "get", "cm", "c1", "--show-labels").stdout


def test_patch_types_and_edit(kubectl: Kubectl, ns: str) -> None:
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx:1.25")
    assert (
        kubectl(
            "-n",
            ns,
            "patch",
            "deploy",
            "web",
            "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}',
        ).stdout
        == "deployment.apps/web patched\n"
    )
    kubectl(
        "-n",
        ns,
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"labels":{"m":"1"}}}',
    )
    kubectl(
        "-n",
        ns,
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":3}]',
    )
    obj = json.loads(kubectl("-n", ns, "get", "deploy", "web", "-o", "json").stdout)
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert len(obj["spec"]["template"]["spec"]["containers"]) == 1
    assert obj["metadata"]["labels"]["m"] == "1" and obj["spec"]["replicas"] == 3
    out = kubectl(
        "-n", ns, "edit", "deploy", "web", env={"EDITOR": "sed -i s/nginx:1.26/nginx:1.27/"}
    )
    assert out.stdout == "deployment.apps/web edited\n"
    assert (
        kubectl(
            "-n",
            ns,
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        == "nginx:1.27"
    )
    bad = kubectl(
        "-n",
        ns,
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        '[{"op":"remove","path":"/spec/nope"}]',
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr == (
        "The request is invalid: Unable to remove nonexistent key: nope: missing value\n"
    )


def test_client_side_apply_removes_dropped_fields(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(DEPLOYMENT.format(name="app"))
    assert kubectl("-n", ns, "apply", "-f", str(manifest)).stdout == "deployment.apps/app created\n"
    assert (
        kubectl("-n", ns, "apply", "-f", str(manifest)).stdout == "deployment.apps/app unchanged\n"
    )
    text = DEPLOYMENT.format(name="app").replace(", extra: remove-me", "")
    text = text.replace('        - {name: B, value: "2"}\n', "")
    text = text.replace("      - name: side\n        image: busybox:1.36\n", "")
    manifest.write_text(text)
    assert (
        kubectl("-n", ns, "apply", "-f", str(manifest)).stdout == "deployment.apps/app configured\n"
    )
    obj = json.loads(
        kubectl("-n", ns, "get", "deploy", "app", "-o", "json", "--show-managed-fields").stdout
    )
    assert obj["metadata"]["labels"] == {"tier": "web"}
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main"]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}]
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert managers == {"kubectl-client-side-apply"}


def test_field_validation_strict_warn_and_server_side(
    kubectl: Kubectl, ns: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DEPLOYMENT.format(name="bad").replace("  replicas: 2\n", "  replicas: 2\n  foo: bar\n")
    )
    strict = kubectl("-n", ns, "apply", "-f", str(bad), check=False)
    assert strict.returncode == 1
    assert strict.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "{bad}": Deployment in version '
        '"v1" cannot be handled as a Deployment: strict decoding error: unknown field '
        '"spec.foo"'
    )
    warn = kubectl("-n", ns, "apply", "-f", str(bad), "--validate=warn")
    assert warn.stderr == 'Warning: unknown field "spec.foo"\n'
    stored = json.loads(kubectl("-n", ns, "get", "deploy", "bad", "-o", "json").stdout)
    assert "foo" not in stored["spec"]  # dropped (the last-applied annotation keeps it)
    ssa = kubectl("-n", ns, "apply", "--server-side", "-f", str(bad), check=False)
    assert ssa.returncode == 1
    assert ssa.stderr.strip() == (
        f"Error from server: failed to create typed patch object ({ns}/bad; apps/v1, "
        "Kind=Deployment): .spec.foo: field not declared in schema"
    )


def test_server_side_apply_conflicts_and_force(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx:1.25", "--replicas=1")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: nginx, image: nginx:1.25}}]
""")
    refused = kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        'error: Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: '
        ".spec.replicas\n"
    )
    assert (
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest)).stdout
        == "deployment.apps/web serverside-applied\n"
    )
    obj = json.loads(
        kubectl("-n", ns, "get", "deploy", "web", "-o", "json", "--show-managed-fields").stdout
    )
    assert obj["spec"]["replicas"] == 3
    entries = {(m["manager"], m["operation"]): m for m in obj["metadata"]["managedFields"]}
    assert "f:replicas" in entries[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in entries[("kubectl-create", "Update")]["fieldsV1"]["f:spec"]
    config = tmp_path / "cm.yaml"
    config.write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {ns}}}"
        "\ndata: {a: '1', b: '2'}\n"
    )
    assert (
        kubectl("apply", "--server-side", "-f", str(config)).stdout
        == "configmap/c serverside-applied\n"
    )
    config.write_text(config.read_text().replace(", b: '2'", ""))
    kubectl("apply", "--server-side", "-f", str(config))
    assert kubectl("-n", ns, "get", "cm", "c", "-o", "jsonpath={.data}").stdout == '{"a":"1"}'


def test_dry_run_server_and_scale(kubectl: Kubectl, ns: str) -> None:
    out = kubectl("-n", ns, "create", "deployment", "dry", "--image=x", "--dry-run=server")
    assert out.stdout == "deployment.apps/dry created (server dry run)\n"
    missing = kubectl("-n", ns, "get", "deploy", "dry", check=False)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == 'Error from server (NotFound): deployments.apps "dry" not found'
    )
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx")
    assert (
        kubectl("-n", ns, "scale", "deploy", "web", "--replicas=4").stdout
        == "deployment.apps/web scaled\n"
    )
    assert (
        kubectl("-n", ns, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "4"
    )


def test_delete_variants(kubectl: Kubectl, ns: str) -> None:
    for name in ("a", "b", "c", "d", "e"):
        kubectl("-n", ns, "create", "configmap", name)
    kubectl("-n", ns, "label", "cm", "b", "doomed=yes")
    assert (
        kubectl("-n", ns, "delete", "cm", "a").stdout
        == f'configmap "a" deleted from {ns} namespace\n'
    )
    assert (
        kubectl("-n", ns, "delete", "cm", "-l", "doomed=yes").stdout
        == f'configmap "b" deleted from {ns} namespace\n'
    )
    kubectl("-n", ns, "delete", "cm", "c", "--cascade=orphan", "--wait=false")
    kubectl("-n", ns, "delete", "cm", "d", "--cascade=foreground", "--wait=false")
    c = json.loads(kubectl("-n", ns, "get", "cm", "c", "-o", "json").stdout)["metadata"]
    d = json.loads(kubectl("-n", ns, "get", "cm", "d", "-o", "json").stdout)["metadata"]
    assert c["finalizers"] == ["orphan"] and c["deletionTimestamp"]
    assert d["finalizers"] == ["foregroundDeletion"] and d["deletionTimestamp"]
    for name in ("c", "d"):  # the garbage collector's part, done by hand
        kubectl(
            "-n",
            ns,
            "patch",
            "cm",
            name,
            "--type",
            "json",
            "-p",
            '[{"op":"remove","path":"/metadata/finalizers"}]',
        )
    out = kubectl("-n", ns, "delete", "cm", "--all", "--cascade=background").stdout
    assert out == f'configmap "e" deleted from {ns} namespace\n'
    assert kubectl("-n", ns, "get", "cm").stderr == f"No resources found in {ns} namespace.\n"


def test_wait(kubectl: Kubectl, ns: str, http: httpx.Client) -> None:
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx")
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    set_status(
        http,
        path,
        {
            "readyReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
            ],
        },
    )
    assert (
        kubectl("-n", ns, "wait", "deploy/web", "--for=condition=Available", "--timeout=10s").stdout
        == "deployment.apps/web condition met\n"
    )
    assert (
        kubectl(
            "-n",
            ns,
            "wait",
            "deploy/web",
            "--for=jsonpath={.status.readyReplicas}=1",
            "--timeout=10s",
        ).stdout
        == "deployment.apps/web condition met\n"
    )
    timeout = kubectl(
        "-n", ns, "wait", "deploy/web", "--for=condition=Progressing", "--timeout=1s", check=False
    )
    assert timeout.returncode == 1
    assert timeout.stderr.strip() == "error: timed out waiting for the condition on deployments/web"
    kubectl("-n", ns, "create", "configmap", "gone")
    kubectl("-n", ns, "delete", "cm", "gone", "--wait=false")
    assert kubectl("-n", ns, "wait", "cm/gone", "--for=delete", "--timeout=10s").returncode == 0


def test_rollout_history_undo_status(kubectl: Kubectl, ns: str, http: httpx.Client) -> None:
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx:1.25")
    kubectl("-n", ns, "annotate", "deploy", "web", "deployment.kubernetes.io/revision=2")
    uid = kubectl("-n", ns, "get", "deploy", "web", "-o", "jsonpath={.metadata.uid}").stdout
    for rev, image in ((1, "nginx:1.24"), (2, "nginx:1.25")):
        labels = {"app": "web", "pod-template-hash": f"h{rev}"}
        r = http.post(
            f"/apis/apps/v1/namespaces/{ns}/replicasets",
            json={
                "metadata": {
                    "name": f"web-h{rev}",
                    "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "web",
                            "uid": uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "nginx", "image": image}]},
                    },
                },
            },
        )
        assert r.status_code == 201, r.text
    history = kubectl("-n", ns, "rollout", "history", "deploy/web").stdout
    assert history == (
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    )
    rev1 = kubectl("-n", ns, "rollout", "history", "deploy/web", "--revision=1").stdout
    assert rev1.startswith("deployment.apps/web with revision #1\n") and "nginx:1.24" in rev1
    rs = rows(kubectl("-n", ns, "get", "rs").stdout)
    assert rs[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert (
        kubectl("-n", ns, "rollout", "undo", "deploy/web", "--to-revision=1").stdout
        == "deployment.apps/web rolled back\n"
    )
    assert (
        kubectl(
            "-n",
            ns,
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        == "nginx:1.24"
    )
    assert (
        kubectl("-n", ns, "rollout", "undo", "deploy/web", "--to-revision=1").stdout
        == "deployment.apps/web skipped rollback (current template already matches revision 1)\n"
    )
    generation = kubectl(
        "-n", ns, "get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"
    ).stdout
    set_status(
        http,
        f"/apis/apps/v1/namespaces/{ns}/deployments/web",
        {
            "observedGeneration": int(generation),
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        },
    )
    assert (
        kubectl("-n", ns, "rollout", "status", "deploy/web", "--timeout=10s").stdout
        == 'deployment "web" successfully rolled out\n'
    )


def test_describe_every_kind_with_events(kubectl: Kubectl, ns: str, http: httpx.Client) -> None:
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx")
    kubectl("-n", ns, "create", "configmap", "cfg", "--from-literal=a=1")
    kubectl("-n", ns, "create", "secret", "generic", "sec", "--from-literal=a=1")
    kubectl("-n", ns, "create", "service", "clusterip", "svc", "--tcp=80")
    kubectl("-n", ns, "create", "serviceaccount", "sa")
    path = make_pod(http, ns, "pod")
    uid = http.get(path).json()["metadata"]["uid"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    http.post(
        f"/api/v1/namespaces/{ns}/events",
        json={
            "metadata": {"name": "pod.1"},
            "reason": "Pulled",
            "type": "Normal",
            "message": "Container image pulled",
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "kubelet"},
            "involvedObject": {
                "kind": "Pod",
                "name": "pod",
                "namespace": ns,
                "uid": uid,
                "apiVersion": "v1",
            },
        },
    )
    http.post(
        f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        json={"metadata": {"name": "lease"}, "spec": {"holderIdentity": "me"}},
    )
    http.post(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
        json={
            "metadata": {"name": "slice"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"port": 80}],
        },
    )
    pod = kubectl("-n", ns, "describe", "pod", "pod").stdout
    assert pod.startswith("Name:             pod\nNamespace:        " + ns)
    assert "Events:\n  Type    Reason  Age" in pod
    assert "Normal  Pulled" in pod and "Container image pulled" in pod
    for kind, name in (
        ("deployment", "web"),
        ("configmap", "cfg"),
        ("secret", "sec"),
        ("service", "svc"),
        ("serviceaccount", "sa"),
        ("lease", "lease"),
        ("endpointslice", "slice"),
        ("namespace", ns),
        ("event", "pod.1"),
    ):
        out = kubectl("-n", ns, "describe", kind, name).stdout
        assert out.startswith("Name:"), (kind, out)
        assert name in out.splitlines()[0]


def test_get_watch_prints_rows(kubectl: Kubectl, ns: str, apiserver: Any) -> None:
    kubectl("-n", ns, "create", "configmap", "first")
    binary = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"
    watcher = subprocess.Popen(
        [
            str(binary),
            "--kubeconfig",
            str(apiserver.kubeconfig),
            "-n",
            ns,
            "get",
            "cm",
            "-w",
            "--output-watch-events",
            "--request-timeout=8s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        kubectl("-n", ns, "create", "configmap", "second", "--from-literal=a=b")
        kubectl("-n", ns, "delete", "configmap", "first")
        time.sleep(1.5)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    lines = rows(out)
    assert lines[0] == ["EVENT", "NAME", "DATA", "AGE"]
    events = [(r[0], r[1]) for r in lines[1:]]
    assert ("ADDED", "first") in events and ("ADDED", "second") in events
    assert ("DELETED", "first") in events
