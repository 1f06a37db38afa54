"""k8slite: the umbrella command (version, certs, up, status, stop, logs, kubeconfig, ...)."""

from __future__ import annotations

import argparse
import sys

from k8slite.component.flags import version_text


def _version(_: list[str]) -> int:
    print(version_text())
    return 0


def _certs(argv: list[str]) -> int:
    from k8slite.pki import certs_main

    return certs_main(argv)


def _up(argv: list[str]) -> int:
    from k8slite.cmd.up import main as up_main

    return up_main(argv)


def _join(argv: list[str]) -> int:
    from k8slite.cmd.join import main as join_main

    return join_main(argv)


def _status(argv: list[str]) -> int:
    from k8slite.cmd.lifecycle import status_main

    return status_main(argv)


def _stop(argv: list[str]) -> int:
    from k8slite.cmd.lifecycle import stop_main

    return stop_main(argv)


def _logs(argv: list[str]) -> int:
    from k8slite.cmd.lifecycle import logs_main

    return logs_main(argv)


def _kubeconfig(argv: list[str]) -> int:
    from k8slite.cmd.kubeconfig import main as kubeconfig_main

    return kubeconfig_main(argv)


def _hollow_nodes(argv: list[str]) -> int:
    from k8slite.cmd.hollow import main as hollow_main

    return hollow_main(argv)


def _storage(argv: list[str]) -> int:
    from k8slite.cmd.storage import main as storage_main

    return storage_main(argv)


def _token(argv: list[str]) -> int:
    from k8slite.cmd.token import main as token_main

    return token_main(argv)


def _netagent(argv: list[str]) -> int:
    from k8slite.cmd.netagent import main as netagent_main

    return netagent_main(argv)


def _dashboard(argv: list[str]) -> int:
    from k8slite.dashboard.main import main as dashboard_main

    return dashboard_main(argv)


def _all_in_one(argv: list[str]) -> int:
    from k8slite.cmd.allinone import main as all_in_one_main

    return all_in_one_main(argv)


def _load_balancer(argv: list[str]) -> int:
    from k8slite.loadbalancer import main as lb_main

    return lb_main(argv)


COMMANDS = {
    "version": (_version, "print the version"),
    "certs": (_certs, "create the cluster's certificates and kubeconfigs"),
    "up": (_up, "run a cluster on embedded defaults (--detach: in the background)"),
    "join": (_join, "join this host to a cluster as a node (bootstrap token, TLS bootstrap)"),
    "status": (_status, "the cluster's components, their health, node readiness"),
    "stop": (_stop, "stop the cluster (or joined node) of a data directory"),
    "logs": (_logs, "print (-f: follow) a component's log"),
    "kubeconfig": (_kubeconfig, "print the admin kubeconfig, or --merge it into ~/.kube/config"),
    "token": (_token, "create, list or delete bootstrap tokens (nodes join with them)"),
    "all-in-one": (
        _all_in_one,
        "run components as tasks of one process (what `k8slite up --single-process` runs)",
    ),
    "load-balancer": (_load_balancer, "a local TCP load balancer in front of API servers"),
    "hollow-nodes": (_hollow_nodes, "run simulated kubelets for scale tests"),
    "storage": (_storage, "migrate a stopped cluster's objects between RocksDB and etcd"),
    "netagent": (_netagent, "the node network agent: pod routes across hosts (host-gw, vxlan)"),
    "dashboard": (_dashboard, "serve a live web dashboard of the cluster on 127.0.0.1"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="k8slite", description=__doc__)
    parser.add_argument(
        "command",
        choices=COMMANDS,
        help=", ".join(f"{name}: {help_}" for name, (_, help_) in COMMANDS.items()),
    )
    parser.add_argument("--version", action="version", version=version_text())
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    return COMMANDS[args.command][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
