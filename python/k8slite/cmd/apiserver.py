"""k8slite-apiserver: serve the Kubernetes API over HTTPS on embedded RocksDB or on etcd."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import trio

from k8slite.apiserver.limits import (
    MAX_MUTATING_REQUESTS_INFLIGHT,
    MAX_REQUESTS_INFLIGHT,
    REQUEST_TIMEOUT,
)
from k8slite.apiserver.server import (
    ADMISSION_PLUGINS,
    DEFAULT_ADMISSION_PLUGINS,
    STORAGE_BACKENDS,
    ApiServerConfig,
    run,
)
from k8slite.cmd.common import run_until_signal
from k8slite.component.flags import add_component_flags, duration, go_bool
from k8slite.component.logging import setup_logging
from k8slite.serviceaccount.claims import DEFAULT_ISSUER
from k8slite.storage.etcd import DEFAULT_PREFIX, EtcdTLS


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _admission_plugins(enable: list[str], disable: list[str]) -> tuple[str, ...]:
    for name in (*enable, *disable):
        if name not in ADMISSION_PLUGINS:
            raise SystemExit(
                f"k8slite-apiserver: unknown admission plugin {name!r} "
                f"(known: {', '.join(ADMISSION_PLUGINS)})"
            )
    wanted = set(DEFAULT_ADMISSION_PLUGINS) | set(enable)
    return tuple(p for p in ADMISSION_PLUGINS if p in wanted and p not in disable)


def parse_args(argv: list[str] | None) -> tuple[ApiServerConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="k8slite-apiserver", description=__doc__)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".k8slite"),
        help="RocksDB in DIR/db, certificates in DIR/pki (default ./.k8slite)",
    )
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--secure-port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--tls-cert-file", type=Path)
    p.add_argument("--tls-private-key-file", type=Path)
    p.add_argument("--client-ca-file", type=Path)
    p.add_argument(
        "--watch-cache-size",
        type=int,
        default=10_000,
        help="recent events kept per resource for watch resumption, at least",
    )
    p.add_argument(
        "--watch-cache-window",
        type=float,
        default=75.0,
        metavar="SECONDS",
        help="and more while younger than this (up to 102,400); 0: exactly --watch-cache-size",
    )
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument(
        "--advertise-address", help="address the kubernetes service's endpoints point at"
    )
    p.add_argument(
        "--audit-log-path",
        type=Path,
        help="append one JSON line per mutating request (audit.k8s.io/v1 Events)",
    )
    p.add_argument(
        "--max-requests-inflight",
        type=int,
        default=MAX_REQUESTS_INFLIGHT,
        help="with the next, the seats shared among the priority levels (both 0: no limit)",
    )
    p.add_argument(
        "--max-mutating-requests-inflight",
        type=int,
        default=MAX_MUTATING_REQUESTS_INFLIGHT,
        help="with the previous, the seats shared among the priority levels",
    )
    p.add_argument(
        "--request-timeout",
        type=duration,
        default=REQUEST_TIMEOUT,
        help="longest a non-long-running request may take, e.g. 60s or 1m0s",
    )
    etcd = p.add_argument_group("storage")
    etcd.add_argument(
        "--storage-backend",
        choices=STORAGE_BACKENDS,
        default="rocksdb",
        help="rocksdb: embedded in DIR/db (the default); etcd3: the etcd cluster of --etcd-servers",
    )
    etcd.add_argument(
        "--etcd-servers",
        type=_names,
        default=[],
        help="comma-separated etcd URLs (http:// or https://), tried in turn",
    )
    etcd.add_argument("--etcd-cafile", type=Path, help="CA bundle that verifies etcd")
    etcd.add_argument("--etcd-certfile", type=Path, help="client certificate for etcd")
    etcd.add_argument("--etcd-keyfile", type=Path, help="key of --etcd-certfile")
    etcd.add_argument(
        "--etcd-prefix",
        default=DEFAULT_PREFIX,
        help=f"the prefix of every key in etcd (default {DEFAULT_PREFIX})",
    )
    etcd.add_argument(
        "--etcd-compaction-interval",
        type=duration,
        default=300.0,
        help="how often etcd history is compacted, e.g. 5m0s (0 disables)",
    )
    p.add_argument(
        "--event-ttl",
        type=duration,
        default=3600.0,
        help="how long Events are kept after their last write, e.g. 1h0m0s (etcd3 only: "
        "RocksDB keeps them until deleted)",
    )
    sa = p.add_argument_group("service accounts")
    sa.add_argument(
        "--service-account-key-file",
        type=Path,
        action="append",
        default=[],
        help="PEM file of public (or private) keys that verify service-account tokens; "
        "repeatable (default DIR/pki/sa.pub)",
    )
    sa.add_argument(
        "--service-account-signing-key-file",
        type=Path,
        help="private key that signs service-account tokens (default DIR/pki/sa.key)",
    )
    sa.add_argument(
        "--service-account-issuer",
        action="append",
        default=[],
        help=f"issuer of service-account tokens; repeatable, the first signs "
        f"(default {DEFAULT_ISSUER})",
    )
    sa.add_argument(
        "--api-audiences",
        type=_names,
        default=[],
        help="comma-separated audiences the API accepts in tokens (default: the issuers)",
    )
    sa.add_argument(
        "--service-account-max-token-expiration",
        type=duration,
        default=0.0,
        help="longest lifetime of a requested token, e.g. 24h (default: no limit)",
    )
    sa.add_argument(
        "--service-account-extend-token-expiration",
        type=go_bool,
        nargs="?",
        const=True,
        default=True,
        help="pod-bound tokens asked for with 3607 s last a year, warned of after 3607 s "
        "(default true)",
    )
    sa.add_argument(
        "--service-account-jwks-uri",
        default="",
        help="jwks_uri in the discovery document (default: this server's /openid/v1/jwks)",
    )
    p.add_argument(
        "--enable-admission-plugins",
        type=_names,
        default=[],
        help="admission plugins to run besides the defaults "
        f"(known: {', '.join(ADMISSION_PLUGINS)})",
    )
    p.add_argument(
        "--disable-admission-plugins",
        type=_names,
        default=[],
        help="admission plugins not to run, though on by default",
    )
    p.add_argument(
        "--enable-bootstrap-token-auth",
        action="store_true",
        help="bootstrap token Secrets (kube-system, type bootstrap.kubernetes.io/token) "
        "authenticate; kube-public/cluster-info is published for joining nodes",
    )
    p.add_argument(
        "--anonymous-auth-paths",
        type=_names,
        default=[],
        help="comma-separated paths requests without credentials may use, as "
        "system:anonymous (RBAC still applies); default none",
    )
    add_component_flags(p)
    a = p.parse_args(argv)
    if a.storage_backend == "etcd3" and not a.etcd_servers:
        p.error("--etcd-servers must be specified with --storage-backend=etcd3")
    if bool(a.etcd_certfile) != bool(a.etcd_keyfile):
        p.error("--etcd-certfile and --etcd-keyfile go together")
    low, _, high = a.service_node_port_range.partition("-")
    config = ApiServerConfig(
        data_dir=a.data_dir,
        bind_address=a.bind_address,
        secure_port=a.secure_port,
        tls_cert_file=a.tls_cert_file,
        tls_private_key_file=a.tls_private_key_file,
        client_ca_file=a.client_ca_file,
        watch_cache_size=a.watch_cache_size,
        watch_cache_window=a.watch_cache_window,
        service_cluster_ip_range=a.service_cluster_ip_range,
        service_node_port_range=(int(low), int(high or low)),
        advertise_address=a.advertise_address,
        audit_log_path=a.audit_log_path,
        max_requests_inflight=a.max_requests_inflight,
        max_mutating_requests_inflight=a.max_mutating_requests_inflight,
        request_timeout=a.request_timeout,
        service_account_key_files=a.service_account_key_file,
        service_account_signing_key_file=a.service_account_signing_key_file,
        service_account_issuers=a.service_account_issuer or [DEFAULT_ISSUER],
        api_audiences=a.api_audiences,
        service_account_max_token_expiration=a.service_account_max_token_expiration,
        service_account_jwks_uri=a.service_account_jwks_uri,
        service_account_extend_token_expiration=a.service_account_extend_token_expiration,
        admission_plugins=_admission_plugins(
            a.enable_admission_plugins, a.disable_admission_plugins
        ),
        storage_backend=a.storage_backend,
        etcd_servers=a.etcd_servers,
        etcd_tls=EtcdTLS(a.etcd_cafile, a.etcd_certfile, a.etcd_keyfile)
        if a.etcd_cafile or a.etcd_certfile
        else None,
        etcd_prefix=a.etcd_prefix,
        etcd_compaction_interval=a.etcd_compaction_interval,
        event_ttl=a.event_ttl,
        enable_bootstrap_token_auth=a.enable_bootstrap_token_auth,
        anonymous_auth_paths=a.anonymous_auth_paths,
    )
    return config, a


async def serve(
    config: ApiServerConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; started once it listens (k8slite all-in-one waits for that)."""
    async with trio.open_nursery() as nursery:
        serving = await nursery.start(run, config)
        # A line for people and for scripts (tests read the URL from it).
        print(f"k8slite-apiserver listening on {serving.url}", flush=True)
        task_status.started()


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    # RocksDB creates its files under the process umask: 077 makes them 0600, as etcd's.
    os.umask(0o077)
    setup_logging(args.verbosity, args.logging_format)
    return run_until_signal(serve, config)


if __name__ == "__main__":
    sys.exit(main())
