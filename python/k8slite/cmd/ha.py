"""k8slite up --ha: a three-way control plane on one machine.

Three etcd members (TLS between peers and for clients, certificates from the cluster PKI,
data in DIR/etcd/etcd-N), three API servers on etcd, and the local load balancer
(k8slite.loadbalancer) on the cluster's one address in front of them: every kubeconfig,
the components' and kubectl's, points at the balancer, which moves connections to a live
API server. Two controller managers and two schedulers elect their leaders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from k8slite import pki
from k8slite.cmd.up import Component, script
from k8slite.freeport import free_port

MEMBERS = 3
APISERVERS = 3
# etcd's own example cluster's ports (its Procfile): clients 2379, 22379, 32379; peers the
# next port of each. Free ports instead when the cluster's port is 0.
_ETCD_CLIENT_PORTS = (2379, 22379, 32379)
_ETCD_BINARY = "etcd"


def etcd_names() -> list[str]:
    return [f"etcd-{i + 1}" for i in range(MEMBERS)]


def apiserver_names() -> list[str]:
    return [f"apiserver-{i + 1}" for i in range(APISERVERS)]


def pick_ports(data_dir: Path, api_port: int) -> dict[str, int]:
    """The ports of the HA control plane's own processes, keyed by component (etcd members'
    peer ports as NAME-peer; controller-manager-2 and scheduler-2 for the second ones).

    etcd members keep their peer and client URLs in their data: the ports are chosen once
    and kept in DIR/etcd/ports.json, so a restart of the cluster finds its members again.
    """
    saved = data_dir / "etcd" / "ports.json"
    if saved.exists():
        etcd_ports: dict[str, int] = json.loads(saved.read_text())
    else:
        etcd_ports = {}
        for i, name in enumerate(etcd_names()):
            if api_port == 0:
                etcd_ports[name], etcd_ports[f"{name}-peer"] = free_port(), free_port()
            else:
                client = _ETCD_CLIENT_PORTS[i]
                etcd_ports[name], etcd_ports[f"{name}-peer"] = client, client + 1
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(etcd_ports))
    ports = dict(etcd_ports)
    for i, name in enumerate(apiserver_names()):
        ports[name] = free_port() if api_port == 0 else api_port + 1 + i
    for name in ("controller-manager-2", "scheduler-2"):
        ports[name] = free_port()
    return ports


def etcd_urls(ports: dict[str, int]) -> list[str]:
    return [f"https://127.0.0.1:{ports[name]}" for name in etcd_names()]


def etcd_members(data_dir: Path, ports: dict[str, int]) -> list[Component]:
    """Three etcd members with TLS for clients and peers, each client and peer certificate
    checked against the cluster CA."""
    p = data_dir / "pki"
    pki.ensure_etcd_pki(p)
    ca = p / "ca.pem"
    cert, key = pki.cert_paths(p, pki.ETCD_SERVER)
    peers = {name: f"https://127.0.0.1:{ports[f'{name}-peer']}" for name in etcd_names()}
    cluster = ",".join(f"{name}={url}" for name, url in peers.items())
    etcd = shutil.which(_ETCD_BINARY) or _ETCD_BINARY
    members = []
    for name in etcd_names():
        client = f"https://127.0.0.1:{ports[name]}"
        members.append(
            Component(
                name,
                [
                    etcd,
                    f"--name={name}",
                    f"--data-dir={data_dir / 'etcd' / name}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peers[name]}",
                    f"--initial-advertise-peer-urls={peers[name]}",
                    f"--initial-cluster={cluster}",
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=k8slite",
                    f"--cert-file={cert}",
                    f"--key-file={key}",
                    f"--trusted-ca-file={ca}",
                    "--client-cert-auth",
                    f"--peer-cert-file={cert}",
                    f"--peer-key-file={key}",
                    f"--peer-trusted-ca-file={ca}",
                    "--peer-client-cert-auth",
                    # Progress notifications let watch caches move their mark on (bookmarks).
                    "--experimental-watch-progress-notify-interval=5s",
                    "--logger=zap",
                    "--log-level=warn",
                ],
                data_dir / "logs" / f"{name}.log",
            )
        )
    return members


def etcd_client_flags(data_dir: Path, ports: dict[str, int]) -> list[str]:
    """The API server's flags for the three members, over TLS with its client certificate."""
    p = data_dir / "pki"
    cert, key = pki.cert_paths(p, pki.ETCD_CLIENT)
    return [
        "--storage-backend=etcd3",
        "--etcd-servers=" + ",".join(etcd_urls(ports)),
        f"--etcd-cafile={p / 'ca.pem'}",
        f"--etcd-certfile={cert}",
        f"--etcd-keyfile={key}",
    ]


def apiservers(template: Component, data_dir: Path, ports: dict[str, int]) -> list[Component]:
    """Three API servers from the single-server one: their own port, data dir and log."""
    servers = []
    for name in apiserver_names():
        argv = _replace_flag(template.argv, "--secure-port", str(ports[name]))
        argv = _replace_flag(argv, "--data-dir", str(data_dir / "apiservers" / name))
        argv += etcd_client_flags(data_dir, ports)
        servers.append(Component(name, argv, data_dir / "logs" / f"{name}.log"))
    return servers


def load_balancer(data_dir: Path, ports: dict[str, int], monitoring: str) -> Component:
    """The balancer on the cluster's address; it checks /readyz as the monitoring identity,
    which may read it."""
    p = data_dir / "pki"
    return Component(
        "load-balancer",
        [
            script("k8slite"),
            "load-balancer",
            "--listen",
            f"127.0.0.1:{ports['apiserver']}",
            "--servers",
            ",".join(f"https://127.0.0.1:{ports[n]}" for n in apiserver_names()),
            "--health-cafile",
            str(p / "ca.pem"),
            "--health-certfile",
            str(p / f"client-{monitoring}.pem"),
            "--health-keyfile",
            str(p / f"client-{monitoring}.key"),
        ],
        data_dir / "logs" / "load-balancer.log",
    )


def second(component: Component, port: int, data_dir: Path) -> Component:
    """A second controller manager or scheduler: the same flags but its serving port; the
    leader election decides which one works."""
    name = f"{component.name}-2"
    argv = _replace_flag(component.argv, "--secure-port", str(port))
    return Component(name, argv, data_dir / "logs" / f"{name}.log")


def _replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    i = out.index(flag)
    out[i + 1] = value
    return out


def control_plane(
    apiserver: Component,
    rest: list[Component],
    data_dir: Path,
    ports: dict[str, int],
    monitoring: str,
) -> tuple[list[Component], list[Component]]:
    """What serves the API under --ha, in start order (etcd members, API servers, the
    balancer) instead of the one API server; and the rest with a second controller manager
    and scheduler after the first ones."""
    control = [
        *etcd_members(data_dir, ports),
        *apiservers(apiserver, data_dir, ports),
        load_balancer(data_dir, ports, monitoring),
    ]
    more = []
    for c in rest:
        more.append(c)
        if c.name in ("controller-manager", "scheduler"):
            more.append(second(c, ports[f"{c.name}-2"], data_dir))
    return control, more
