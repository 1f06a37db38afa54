"""k8slite token: create, list and delete bootstrap tokens, as `kubeadm token` does.

It talks to the API server with the admin kubeconfig of a data directory (the one
`k8slite up` writes); a token is a Secret kube-system/bootstrap-token-<id>.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
import yaml

from k8slite import bootstraptoken as bt
from k8slite.api.printers import short_human_duration
from k8slite.client import (
    AlreadyExists,
    ApiClient,
    ApiConnectionError,
    ApiError,
    KubeconfigError,
    NotFound,
    load_kubeconfig,
)
from k8slite.client.resource import CONFIGMAPS, SECRETS
from k8slite.cmd.up import DEFAULT_DATA_DIR
from k8slite.component.flags import duration

PROG = "k8slite token"
# Upstream's patterns as its messages print them.
ID_FORM = r"\A([a-z0-9]{6})\z"
TOKEN_FORM = r"\A([a-z0-9]{6})\.([a-z0-9]{16})\z"
HEADER = ("TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS")


class TokenError(Exception):
    """A refused request, reported as `k8slite token: error: ...`."""


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def new_token(
    token: str | None,
    ttl: float,
    usages: list[str],
    groups: list[str],
    description: str,
    now: datetime,
) -> bt.TokenSecret:
    """The token Secret `token create` makes, validated as kubeadm validates it."""
    token = token or bt.generate()
    parsed = bt.parse(token)
    if parsed is None:
        raise TokenError(f'the bootstrap token "{token}" was not of the form "{TOKEN_FORM}"')
    bt.validate_usages(usages)
    bt.validate_groups(groups)
    if groups and "authentication" not in usages:
        raise TokenError(
            'token groups cannot be specified unless --usages includes "authentication"'
        )
    expiration = bt.format_time(now + timedelta(seconds=ttl)) if ttl > 0 else None
    return bt.TokenSecret(parsed[0], parsed[1], expiration, description, usages, groups)


def table(tokens: list[bt.TokenSecret], now: datetime) -> str:
    """kubeadm's `token list` table."""
    rows = [HEADER]
    for t in sorted(tokens, key=lambda t: t.token_id):
        at = t.expires_at()
        ttl = "<forever>" if at is None else short_human_duration((at - now).total_seconds())
        expires = "<never>" if at is None else bt.format_time(at)
        rows.append(
            (
                t.token,
                ttl,
                expires,
                ",".join(t.usages) or "<none>",
                t.description or "<none>",
                ",".join(t.extra_groups) or "<none>",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def token_id_of(arg: str) -> str:
    """The id `token delete` accepts: a token id or a whole token."""
    parsed = bt.parse(arg)
    if parsed is not None:
        return parsed[0]
    if bt.ID_RE.match(arg):
        return arg
    raise TokenError(f'given token didn\'t match pattern "{ID_FORM}" or "{TOKEN_FORM}"')


async def _server_of_cluster_info(client: ApiClient, fallback: str) -> str:
    """The address joining nodes use: cluster-info's (the advertised one), else ours."""
    try:
        cm = await client.get(CONFIGMAPS, bt.CLUSTER_INFO, namespace=bt.CLUSTER_INFO_NAMESPACE)
        config = yaml.safe_load((cm.get("data") or {}).get(bt.KUBECONFIG_KEY) or "") or {}
        return str(config["clusters"][0]["cluster"]["server"])
    except (NotFound, KeyError, IndexError, TypeError):
        return fallback


def join_command(server: str, token: str, ca_pem: bytes) -> str:
    return (
        f"k8slite join --server {server} --token {token} "
        f"--discovery-token-ca-cert-hash {bt.ca_cert_hash(ca_pem)}"
    )


async def _run(a: argparse.Namespace) -> int:
    kubeconfig = a.data_dir.resolve() / "kubeconfig"
    if not kubeconfig.exists():
        raise TokenError(f"no {kubeconfig}: `k8slite up` writes it")
    config = load_kubeconfig(kubeconfig)
    now = datetime.now(UTC)
    async with ApiClient(config) as client:
        if a.action == "create":
            token = new_token(a.token, a.ttl, a.usages, a.groups, a.description, now)
            try:
                await client.create(SECRETS, token.to_secret(), namespace=bt.NAMESPACE)
            except AlreadyExists:
                raise TokenError(f"a token with id {token.token_id!r} already exists") from None
            if a.print_join_command:
                server = await _server_of_cluster_info(client, config.server)
                print(join_command(server, token.token, config.ca_data or b""))
            else:
                print(token.token)
        elif a.action == "list":
            listed = await client.list(SECRETS, namespace=bt.NAMESPACE)
            tokens = [t for t in map(bt.from_secret, listed.get("items") or []) if t]
            sys.stdout.write(table(tokens, now))
        else:
            for arg in a.tokens:
                token_id = token_id_of(arg)
                try:
                    await client.delete(SECRETS, bt.secret_name(token_id), namespace=bt.NAMESPACE)
                except NotFound:
                    raise TokenError(f"failed to delete bootstrap token {token_id!r}") from None
                print(f'bootstrap token "{token_id}" deleted')
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR))
    sub = p.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a bootstrap token (printed on stdout)")
    create.add_argument("token", nargs="?", help="the token to create (default: a random one)")
    create.add_argument(
        "--ttl", type=duration, default=24 * 3600.0, help="lifetime, e.g. 1h; 0: never expires"
    )
    create.add_argument("--description", default="")
    create.add_argument(
        "--usages",
        type=_names,
        default=["signing", "authentication"],
        help="comma-separated: signing, authentication",
    )
    create.add_argument(
        "--groups",
        type=_names,
        default=[bt.DEFAULT_NODE_GROUP],
        help="comma-separated extra groups, each system:bootstrappers:...",
    )
    create.add_argument(
        "--print-join-command",
        action="store_true",
        help="print the `k8slite join` command that uses the token instead of the token",
    )
    sub.add_parser("list", help="list the bootstrap tokens")
    delete = sub.add_parser("delete", help="delete bootstrap tokens (by id or whole token)")
    delete.add_argument("tokens", nargs="+", metavar="ID|TOKEN")
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.action == "create" and a.ttl < 0:
        print(f"{PROG}: error: --ttl must not be negative", file=sys.stderr)
        return 1
    try:
        return trio.run(_run, a)
    except (TokenError, bt.InvalidTokenField, ApiError, KubeconfigError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except ApiConnectionError as e:
        print(
            f"{PROG}: error: cannot reach the API server: {e} (is the cluster up?)", file=sys.stderr
        )
        return 1
