"""A Docker kubelet's pods see the resolv.conf and /etc/hosts their dnsPolicy asks for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.exception
import httpx
import pytest

from tests.conftest import ServerHandle
from tests.integration.dns_harness import Dns, running_dns
from tests.integration.kubelet_harness import (
    BUSYBOX,
    KubeletProcess,
    Pods,
    docker_problem,
    kubectl,
    kubelet_of_its_own,
    unique_node,
)
from tests.polling import wait_for

_PROBLEM = docker_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")
# The host's resolver configuration as this kubelet reads it (--resolv-conf).
HOST_RESOLV_CONF = "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n"
SHOW = "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; hostname"


@pytest.fixture(scope="module")
def kubelet(
    apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletProcess]:
    node = unique_node("kl-dns")
    workdir = tmp_path_factory.mktemp(node)
    (workdir / "host-resolv.conf").write_text(HOST_RESOLV_CONF)
    with kubelet_of_its_own(
        apiserver,
        node,
        "docker",
        workdir,
        "--cluster-dns",
        "10.96.0.10",
        "--cluster-domain",
        "cluster.local",
        "--resolv-conf",
        str(workdir / "host-resolv.conf"),
    ) as proc:
        yield proc


@pytest.fixture
def pods(api: httpx.Client, namespace: str, kubelet: KubeletProcess) -> Pods:
    return Pods(api, namespace, kubelet.node)


def _shown(apiserver: ServerHandle, pods: Pods, name: str, **spec: object) -> list[str]:
    """Run SHOW in a new pod; its resolv.conf, /etc/hosts and hostname, from its log."""
    pods.create(
        name,
        [{"name": "show", "image": BUSYBOX, "command": ["sh", "-c", SHOW]}],
        restartPolicy="Never",
        **spec,
    )
    pods.wait_phase(name, "Succeeded")
    done = kubectl(apiserver, "logs", name, "-n", pods.namespace)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("---\n")


def test_cluster_first_pod(apiserver: ServerHandle, pods: Pods) -> None:
    resolv, hosts, hostname = _shown(
        apiserver,
        pods,
        "cf",
        hostname="db-0",
        subdomain="db",
        hostAliases=[{"ip": "10.1.2.3", "hostnames": ["alias.example"]}],
    )
    assert resolv == (
        "nameserver 10.96.0.10\n"
        f"search {pods.namespace}.svc.cluster.local svc.cluster.local cluster.local "
        "corp.example\n"
        "options ndots:5\n"
    )
    ip = pods.status("cf")["podIP"]
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), hosts
    assert f"{ip}\tdb-0.db.{pods.namespace}.svc.cluster.local\tdb-0\n" in hosts, hosts
    assert hosts.endswith("# Entries added by HostAliases.\n10.1.2.3\talias.example\n"), hosts
    assert hostname == "db-0\n"


def test_default_and_none_pods(apiserver: ServerHandle, pods: Pods) -> None:
    resolv = _shown(apiserver, pods, "dflt", dnsPolicy="Default")[0]
    assert resolv == HOST_RESOLV_CONF
    config = {
        "nameservers": ["192.0.2.1"],
        "searches": ["a.example"],
        "options": [{"name": "ndots", "value": "1"}],
    }
    resolv = _shown(apiserver, pods, "none", dnsPolicy="None", dnsConfig=config)[0]
    assert resolv == "nameserver 192.0.2.1\nsearch a.example\noptions ndots:1\n"


def test_a_container_may_mount_its_own_resolv_conf(
    apiserver: ServerHandle, pods: Pods, tmp_path: Path
) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.99\n")
    tmp_path.chmod(0o755)
    pods.create(
        "own",
        [
            {
                "name": "show",
                "image": BUSYBOX,
                "command": ["cat", "/etc/resolv.conf"],
                "volumeMounts": [
                    {"name": "host", "mountPath": "/etc/resolv.conf", "subPath": "resolv.conf"}
                ],
            }
        ],
        restartPolicy="Never",
        volumes=[{"name": "host", "hostPath": {"path": str(tmp_path)}}],
    )
    pods.wait_phase("own", "Succeeded")
    done = kubectl(apiserver, "logs", "own", "-n", pods.namespace)
    assert done.stdout == "nameserver 192.0.2.99\n", done.stderr


@pytest.fixture(scope="module")
def k8sdns(apiserver: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dns]:
    # No upstream resolvers: a name the cluster does not answer gets SERVFAIL, and no query
    # leaves the machine.
    log = tmp_path_factory.mktemp("kl-dns-server") / "dns.log"
    with running_dns(apiserver, log, "--upstream-dns", "") as server:
        yield server


def test_busybox_nslookup_of_service_dot_namespace(
    apiserver: ServerHandle, api: httpx.Client, pods: Pods, k8sdns: Dns
) -> None:
    """busybox's own nslookup sends `SVC.NS.` as it is (no search list for a dotted name),
    as `kubectl run -it --rm t --image=busybox:1.35 -- nslookup kubernetes.default` does;
    k8slite-dns answers it with the Service's address. A hostNetwork pod reaches the server
    on loopback."""
    ns = pods.namespace
    r = api.post(
        f"/api/v1/namespaces/{ns}/services",
        json={"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
    )
    assert r.status_code == 201, r.text
    web_ip = r.json()["spec"]["clusterIP"]
    kubernetes_ip = api.get("/api/v1/namespaces/default/services/kubernetes").json()["spec"][
        "clusterIP"
    ]
    server = f"127.0.0.1:{k8sdns.port}"

    # The server learns of the Service from its watch: wait until it answers the name.
    def resolves() -> bool:
        try:
            answer = k8sdns.query(f"web.{ns}").answer
        except dns.exception.Timeout:
            return False  # a lost datagram: not yet
        return [r.to_text() for rrset in answer for r in rrset] == [web_ip]

    wait_for(resolves, timeout=60, what=f"web.{ns} to resolve")
    script = (
        f'for n in kubernetes.default web.{ns} nope.{ns}; do echo "== $n"; '
        f'nslookup -type=a "$n" {server} 2>&1; echo "rc=$?"; done'
    )
    pods.create(
        "lookup",
        [{"name": "lookup", "image": BUSYBOX, "command": ["sh", "-c", script]}],
        restartPolicy="Never",
        hostNetwork=True,
    )
    pods.wait_phase("lookup", "Succeeded")
    done = kubectl(apiserver, "logs", "lookup", "-n", ns)
    got = {part.partition("\n")[0]: part for part in done.stdout.split("== ")[1:]}
    assert kubernetes_ip == "10.96.0.1"
    assert "Name:\tkubernetes.default\nAddress: 10.96.0.1\n" in got["kubernetes.default"], (
        done.stdout
    )
    assert got["kubernetes.default"].endswith("rc=0\n"), done.stdout
    assert f"Name:\tweb.{ns}\nAddress: {web_ip}\n" in got[f"web.{ns}"], done.stdout
    # No such Service: not ours to answer, and there is no upstream to ask.
    assert "SERVFAIL" in got[f"nope.{ns}"] and got[f"nope.{ns}"].endswith("rc=1\n"), done.stdout
