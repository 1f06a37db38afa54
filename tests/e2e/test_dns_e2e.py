"""Cluster DNS end to end: pods of a whole cluster find Services by name, in both proxy modes.

`k8slite up` (see cluster.py) runs k8slite-dns with no upstream resolvers (`--upstream-dns
''`), so no query ever leaves the machine: names outside the cluster get SERVFAIL. A busybox
pod resolves Services through the kube-dns Service (10.96.0.10, carried by the proxy) with
the resolv.conf its kubelet wrote, and fetches a page from another Deployment's Service by
name. Traffic goes to service addresses (routed to this host, checked first), the pods on
the cluster's own Docker network, and loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator

import pytest

from tests.conftest import kubectl_path
from tests.e2e.cluster import Cluster, cluster_for_tests
from tests.e2e.test_cluster_e2e import IMAGE, cluster_ip, pods, rollout, routed_locally
from tests.polling import wait_for

pytestmark = pytest.mark.xdist_group("host-network")

DNS_IP = "10.96.0.10"
# busybox 1.35's nslookup applies the search list only to names without a dot, so it asks
# for SVC.NS and kubernetes.default as they are (k8slite-dns answers those for an existing
# Service); wget and ping resolve through the C library's resolver, which honours the search
# list and ndots:5.
SCRIPT = """\
lookup() {{ echo "== nslookup $1"; nslookup "$1" 2>&1; echo "rc=$?"; }}
echo "== resolv.conf"; cat /etc/resolv.conf
lookup kubernetes.default.svc.cluster.local
lookup kubernetes.default
lookup web
lookup web.{ns}
lookup web.{ns}.svc.cluster.local
lookup db
lookup missing
echo "== wget web"; timeout 10 wget -q -O- http://web:80/; echo "rc=$?"
echo "== wget web.{ns}"; timeout 10 wget -q -O- http://web.{ns}/; echo "rc=$?"
echo "== ping kubernetes.default"; ping -c 1 -W 2 kubernetes.default 2>&1 | head -1
"""

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers:
      - name: web
        image: {image}
        command: [sh, -c, "hostname > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"]
        ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{port: 8080}}]
"""


@pytest.fixture(scope="module", params=["userspace", "nftables"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    mode = request.param
    tmp = tmp_path_factory.mktemp(f"dns-{mode}")
    with cluster_for_tests(tmp, "--proxy-mode", mode) as cluster:
        if cluster.info and not cluster.info.get("proxy"):
            pytest.skip("the cluster runs no proxy, which cluster DNS needs")
        yield cluster


def _sections(log: str) -> dict[str, str]:
    out = {}
    for part in log.split("== ")[1:]:
        title, _, body = part.partition("\n")
        out[title] = body
    return out


def test_pods_resolve_services_by_name(cluster: Cluster) -> None:
    ns = f"dns-{os.urandom(3).hex()}"
    cluster.kubectl("create", "namespace", ns)
    try:
        node = cluster.info.get("node") or ""
        manifests = MANIFESTS.format(node=node, image=IMAGE)
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifests)
        rollout(cluster, ns, "web")
        web_pods = pods(cluster, ns, "app=web")
        wait_for(lambda: routed_locally(DNS_IP), 30, what=f"the route to {DNS_IP}")
        pinned = {"spec": {"nodeSelector": {"kubernetes.io/hostname": node}}} if node else {}
        cluster.kubectl(
            "run",
            "client",
            "-n",
            ns,
            f"--image={IMAGE}",
            "--restart=Never",
            f"--overrides={json.dumps(pinned)}",
            "--command",
            "--",
            "sh",
            "-c",
            textwrap.dedent(SCRIPT.format(ns=ns)),
        )
        wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "pod", "client", "-n", ns, "-o", "jsonpath={.status.phase}"
                ).stdout
                == "Succeeded"
            ),
            90,
            what="the client pod to finish",
        )
        log = cluster.kubectl("logs", "client", "-n", ns).stdout
        got = _sections(log)
        # The host's search domains may follow the cluster's.
        resolv = got["resolv.conf"].splitlines()
        assert resolv[0] == f"nameserver {DNS_IP}", log
        assert resolv[1].startswith(
            f"search {ns}.svc.cluster.local svc.cluster.local cluster.local"
        ), log
        assert resolv[2:] == ["options ndots:5"], log

        def answers(name: str) -> str:
            # Its exit status is not the answer's: busybox asks every search domain, for A
            # and AAAA, and fails if any of those found nothing.
            return got[f"nslookup {name}"]

        body = answers("kubernetes.default.svc.cluster.local")
        assert "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n" in body
        body = answers("kubernetes.default")
        assert "Name:\tkubernetes.default\nAddress: 10.96.0.1\n" in body, log
        web_ip = cluster_ip(cluster, ns, "web")
        for name in ("web", f"web.{ns}.svc.cluster.local"):
            assert f"Name:\tweb.{ns}.svc.cluster.local\nAddress: {web_ip}\n" in answers(name)
        assert f"Name:\tweb.{ns}\nAddress: {web_ip}\n" in answers(f"web.{ns}"), log
        # The headless Service: its pods' addresses.
        db = answers("db")
        for p in web_pods:
            assert f"Name:\tdb.{ns}.svc.cluster.local\nAddress: {p['status']['podIP']}\n" in db
        missing = got["nslookup missing"]
        assert f"can't find missing.{ns}.svc.cluster.local: NXDOMAIN" in missing, log
        assert missing.endswith("rc=1\n"), log
        names = {p["metadata"]["name"] for p in web_pods}
        for what in ("wget web", f"wget web.{ns}"):
            page, rc = got[what].rsplit("rc=", 1)
            assert rc == "0\n" and page.strip() in names, log
        assert got["ping kubernetes.default"].startswith("PING kubernetes.default (10.96.0.1)"), log
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_done_means_nslookup_kubernetes_default(cluster: Cluster) -> None:
    """Issue 14's "Done means", to the letter: on a fresh cluster,
    `kubectl run -it --rm t --image=busybox:1.35 -- nslookup kubernetes.default`
    prints 10.96.0.1 (in a terminal, through script(1), as a user would run it)."""
    wait_for(lambda: routed_locally(DNS_IP), 30, what=f"the route to {DNS_IP}")
    command = f"{kubectl_path()} run -it --rm t --image=busybox:1.35 -- nslookup kubernetes.default"
    # stdin stays open (a pipe that ends after the test) so the terminal is not closed early.
    with subprocess.Popen(["sleep", "300"], stdout=subprocess.PIPE) as feeder:
        try:
            done = subprocess.run(
                ["script", "-qec", command, "/dev/null"],
                stdin=feeder.stdout,
                capture_output=True,
                text=True,
                timeout=240,
                env=dict(os.environ, KUBECONFIG=str(cluster.kubeconfig)),
                check=False,
            )
        finally:
            feeder.kill()
    # Line ends as two terminals (the container's and script's) made them.
    out = re.sub(r"[\r\n]+", "\n", done.stdout)
    assert "Name:\tkubernetes.default\nAddress: 10.96.0.1\n" in out, repr(done.stdout)
    assert 'pod "t" deleted from default namespace' in out, out + done.stderr
