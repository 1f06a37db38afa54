"""The kubelet's resolv.conf and /etc/hosts for a pod, per dnsPolicy, dnsConfig and hostname."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from k8slite.api import strategy  # noqa: F401  (loads every kind first: core_v1 imports it)
from k8slite.api.core_v1 import validate_pod_spec
from k8slite.api.validation import FieldErrors
from k8slite.kubelet import dns as kubelet_dns
from k8slite.kubelet.dns import (
    ResolvConf,
    hosts_file,
    parse_resolv_conf,
    pod_dns,
    write_pod_files,
)

HOST = parse_resolv_conf(
    "# the host's\nnameserver 192.168.1.1\nnameserver 192.168.1.2 ; second\n"
    "search old.example\nsearch corp.example. .\noptions timeout:2 rotate\n"
)
CLUSTER_SEARCH = ("ns.svc.cluster.local", "svc.cluster.local", "cluster.local")


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "ns", "uid": "u1"}, "spec": spec}


def test_host_resolv_conf_is_read_as_upstream() -> None:
    parsed = ResolvConf(("192.168.1.1", "192.168.1.2"), ("corp.example",), ("timeout:2", "rotate"))
    assert parsed == HOST


def test_cluster_first() -> None:
    dns = pod_dns(pod(dnsPolicy="ClusterFirst"), ["10.96.0.10"], "cluster.local", HOST)
    assert dns.conf == ResolvConf(("10.96.0.10",), (*CLUSTER_SEARCH, "corp.example"), ("ndots:5",))
    assert dns.warnings == []
    assert dns.conf.render() == (
        "nameserver 10.96.0.10\n"
        "search ns.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:5\n"
    )
    # The policy's default is ClusterFirst.
    assert pod_dns(pod(), ["10.96.0.10"], "cluster.local", HOST).conf == dns.conf


def test_cluster_first_without_cluster_dns_falls_back_to_default() -> None:
    dns = pod_dns(pod(dnsPolicy="ClusterFirst"), [], "cluster.local", HOST)
    assert dns.conf == HOST
    assert dns.warnings == [
        (
            "MissingClusterDNS",
            'pod: "web-1_ns(u1)". kubelet does not have ClusterDNS IP configured and cannot '
            'create Pod using "ClusterFirst" policy. Falling back to "Default" policy.',
        )
    ]


def test_host_network() -> None:
    # ClusterFirst on the host network is Default; ClusterFirstWithHostNet is ClusterFirst.
    plain = pod_dns(pod(hostNetwork=True), ["10.96.0.10"], "cluster.local", HOST)
    assert plain.conf == HOST and plain.warnings == []
    with_net = pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    assert pod_dns(with_net, ["10.96.0.10"], "cluster.local", HOST).conf.servers == ("10.96.0.10",)
    # Off the host network ClusterFirstWithHostNet is plain ClusterFirst.
    off = pod_dns(pod(dnsPolicy="ClusterFirstWithHostNet"), ["10.96.0.10"], "cluster.local", HOST)
    assert off.conf.searches[:3] == CLUSTER_SEARCH


def test_default_and_none() -> None:
    assert pod_dns(pod(dnsPolicy="Default"), ["10.96.0.10"], "cluster.local", HOST).conf == HOST
    none = pod(
        dnsPolicy="None",
        dnsConfig={
            "nameservers": ["1.2.3.4"],
            "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        },
    )
    dns = pod_dns(none, ["10.96.0.10"], "cluster.local", HOST)
    assert dns.conf == ResolvConf(("1.2.3.4",), ("a.example",), ("ndots:2", "edns0"))


def test_dns_config_is_merged() -> None:
    spec = pod(
        dnsConfig={
            "nameservers": ["10.96.0.10", "8.8.8.8"],
            "searches": ["cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}],
        }
    )
    dns = pod_dns(spec, ["10.96.0.10"], "cluster.local", HOST)
    # Duplicates dropped, options overridden by name.
    assert dns.conf == ResolvConf(
        ("10.96.0.10", "8.8.8.8"),
        (*CLUSTER_SEARCH, "corp.example", "extra.example"),
        ("ndots:2", "single-request"),
    )


def test_limits_cut_with_an_event() -> None:
    many = [f"d{i}.example" for i in range(40)]
    spec = pod(dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"], "searches": many})
    dns = pod_dns(spec, ["10.96.0.10"], "cluster.local", HOST)
    assert dns.conf.servers == ("10.96.0.10", "1.1.1.1", "2.2.2.2")
    assert len(dns.conf.searches) == 32
    assert [r for r, _ in dns.warnings] == ["DNSConfigForming", "DNSConfigForming"]
    assert dns.warnings[0][1].endswith("the applied nameserver line is: 10.96.0.10 1.1.1.1 2.2.2.2")
    assert "applied search line is: ns.svc.cluster.local " in dns.warnings[1][1]
    # 2048 characters of search line at most.
    long = [("x" * 60 + f"{i}.example") for i in range(31)]
    cut = pod_dns(pod(dnsConfig={"searches": long}), ["10.96.0.10"], "cluster.local", ResolvConf())
    assert len(" ".join(cut.conf.searches)) <= 2048 < len(" ".join([*CLUSTER_SEARCH, *long]))
    assert cut.conf.searches == (*CLUSTER_SEARCH, *long)[: len(cut.conf.searches)]


def test_hosts_file() -> None:
    text = hosts_file(pod(), ["10.244.0.5"], "cluster.local", "ignored")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert text.endswith("fe00::2\tip6-allrouters\n10.244.0.5\tweb-1\n")
    named = pod(
        hostname="db-0",
        subdomain="db",
        hostAliases=[{"ip": "10.1.2.3", "hostnames": ["a.example", "b.example"]}],
    )
    text = hosts_file(named, ["10.244.0.5"], "cluster.local", "")
    assert "10.244.0.5\tdb-0.db.ns.svc.cluster.local\tdb-0\n" in text
    assert text.endswith("\n# Entries added by HostAliases.\n10.1.2.3\ta.example\tb.example\n")
    host = hosts_file(pod(hostNetwork=True), ["192.168.1.9"], "cluster.local", "1.2.3.4 me\n")
    assert host == "# Kubernetes-managed hosts file (host network).\n1.2.3.4 me\n"


def test_write_pod_files(tmp_path: Path) -> None:
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 192.168.1.1\nsearch corp.example\n")
    hosts = tmp_path / "host-hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    pod_dir = tmp_path / "pods" / "u1"
    warnings = write_pod_files(
        pod_dir,
        pod(),
        ["10.244.0.5"],
        cluster_dns=["10.96.0.10"],
        cluster_domain="cluster.local",
        resolv_conf=host,
        hosts=hosts,
    )
    assert warnings == []
    assert (pod_dir / "resolv.conf").read_text() == (
        "nameserver 10.96.0.10\n"
        "search ns.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:5\n"
    )
    assert "10.244.0.5\tweb-1\n" in (pod_dir / "etc-hosts").read_text()
    assert sorted(p.name for p in pod_dir.iterdir()) == ["etc-hosts", "resolv.conf"]
    # No host resolver configuration (--resolv-conf ''): Default pods get an empty one.
    write_pod_files(
        pod_dir,
        pod(dnsPolicy="Default"),
        [],
        cluster_dns=[],
        cluster_domain="cluster.local",
        resolv_conf=None,
        hosts=hosts,
    )
    assert (pod_dir / "resolv.conf").read_text() == ""


def _pod_errors(**spec: Any) -> list[tuple[str, str]]:
    errs = FieldErrors()
    validate_pod_spec(errs, "spec", {"containers": [{"name": "c", "image": "busybox"}], **spec})
    return [(c["field"], c["message"]) for c in errs.causes]


def test_api_validates_pod_dns() -> None:
    ok = {
        "nameservers": ["10.0.0.1", "fd00::1"],
        "searches": ["a.example.", "_srv.example", "."],
        "options": [{"name": "ndots", "value": "2"}],
    }
    assert _pod_errors(dnsPolicy="None", dnsConfig=ok, hostname="db-0", subdomain="db") == []
    assert _pod_errors(dnsPolicy="None") == [
        ("spec.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None")
    ]
    assert _pod_errors(dnsPolicy="None", dnsConfig={"searches": ["a"]}) == [
        (
            "spec.dnsConfig.nameservers",
            "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
        )
    ]
    bad = {
        "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "nope"],
        "searches": ["Bad_Name"],
        "options": [{"value": "1"}],
    }
    fields = [f for f, _ in _pod_errors(dnsPolicy="Sometimes", dnsConfig=bad, hostname="A.b")]
    assert fields == [
        "spec.hostname",
        "spec.dnsPolicy",
        "spec.dnsConfig.nameservers",
        "spec.dnsConfig.nameservers[3]",
        "spec.dnsConfig.searches[0]",
        "spec.dnsConfig.options[0]",
    ]
    too_many = {"searches": [f"d{i}.example" for i in range(33)]}
    assert _pod_errors(dnsConfig=too_many)[0][1].endswith("must not have more than 32 search paths")
    too_long = {"searches": ["x" * 60 + f".e{i}" for i in range(32)]}
    assert _pod_errors(dnsConfig=too_long)[0][1].endswith(
        "must not have more than 2048 characters (including spaces) in the search list"
    )


def test_default_resolv_conf_skips_systemd_resolved_stub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc, behind = tmp_path / "etc-resolv.conf", tmp_path / "systemd-resolv.conf"
    monkeypatch.setattr(kubelet_dns, "HOST_RESOLV_CONF", etc)
    monkeypatch.setattr(kubelet_dns, "_SYSTEMD_RESOLV_CONF", behind)
    etc.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
    assert kubelet_dns.default_resolv_conf() == etc  # nothing behind it: as it is
    behind.write_text("nameserver 192.168.1.1\n")
    assert kubelet_dns.default_resolv_conf() == behind
    etc.write_text("nameserver 192.168.1.1\n")
    assert kubelet_dns.default_resolv_conf() == etc
