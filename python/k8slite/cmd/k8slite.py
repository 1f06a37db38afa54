"""k8slite: the umbrella command (version, certs, up, hollow-nodes)."""

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


def _hollow_nodes(argv: list[str]) -> int:
    from k8slite.cmd.hollow import main as hollow_main

    return hollow_main(argv)


COMMANDS = {
    "version": (_version, "print the version"),
    "certs": (_certs, "create the cluster's certificates and kubeconfigs"),
    "up": (_up, "run a cluster on embedded defaults"),
    "hollow-nodes": (_hollow_nodes, "run simulated kubelets for scale tests"),
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
