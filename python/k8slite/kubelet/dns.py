"""A pod's /etc/resolv.conf and /etc/hosts, as upstream's kubelet makes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from k8slite.component.objects import Obj, name_of, namespace_of, uid_of

# Upstream's limits (pkg/apis/core/validation and the kubelet's dns package).
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
# Upstream's options for ClusterFirst pods.
CLUSTER_OPTIONS = ("ndots:5",)
# The files in the pod's directory, and where containers see them.
RESOLV_CONF, ETC_HOSTS = "resolv.conf", "etc-hosts"
POD_FILES = {RESOLV_CONF: "/etc/resolv.conf", ETC_HOSTS: "/etc/hosts"}
HOST_HOSTS = Path("/etc/hosts")
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
# systemd-resolved's stub, and the file with the resolvers behind it.
_STUB = "127.0.0.53"
_SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
HOST_NETWORK_HOSTS_HEADER = "# Kubernetes-managed hosts file (host network).\n"
_LOCAL_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """The lines of a resolv.conf: nameservers, search domains, options."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"nameserver {s}" for s in self.servers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(f"{line}\n" for line in lines)


@dataclass
class PodDNS:
    """What the kubelet gives a pod, and the Warning events (reason, message) it owes."""

    conf: ResolvConf
    warnings: list[tuple[str, str]] = field(default_factory=list)


def parse_resolv_conf(text: str) -> ResolvConf:
    """The host's resolv.conf as upstream's kubelet reads it: every nameserver, the last
    search line (without "." and trailing dots), every option."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.rstrip(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options += fields[1:]
    return ResolvConf(tuple(servers), tuple(searches), tuple(options))


def default_resolv_conf() -> Path:
    """--resolv-conf's default: /etc/resolv.conf, unless it names only systemd-resolved's
    stub, which no pod can reach; then the file with the resolvers behind it (what kubeadm
    configures the kubelet with)."""
    try:
        conf = parse_resolv_conf(HOST_RESOLV_CONF.read_text())
    except OSError:
        return HOST_RESOLV_CONF
    if conf.servers == (_STUB,) and _SYSTEMD_RESOLV_CONF.is_file():
        return _SYSTEMD_RESOLV_CONF
    return HOST_RESOLV_CONF


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_options(options: Sequence[str], extra: Iterable[Obj]) -> tuple[str, ...]:
    """dnsConfig options override the same-named ones (name, or name:value)."""
    merged = {o.split(":", 1)[0]: o for o in options}
    for opt in extra:
        name = opt.get("name") or ""
        value = opt.get("value")
        merged[name] = f"{name}:{value}" if value else name
    return tuple(merged.values())


def _pod_ref(pod: Obj) -> str:
    """As upstream's format.Pod: name_namespace(uid)."""
    return f"{name_of(pod)}_{namespace_of(pod)}({uid_of(pod)})"


def pod_dns(pod: Obj, cluster_dns: Sequence[str], cluster_domain: str, host: ResolvConf) -> PodDNS:
    """The pod's resolv.conf per its dnsPolicy and dnsConfig.

    ClusterFirst: the cluster's nameservers, the namespace's, svc's and the cluster domain's
    search domains before the host's, ndots:5; hostNetwork pods get Default unless they ask
    for ClusterFirstWithHostNet, and without --cluster-dns so does every pod (with a
    MissingClusterDNS event). Default: the host's. None: only dnsConfig.
    """
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    warnings: list[tuple[str, str]] = []
    if policy == "ClusterFirstWithHostNet" or (
        policy == "ClusterFirst" and not spec.get("hostNetwork")
    ):
        policy = "ClusterFirst"
    elif policy == "ClusterFirst":
        policy = "Default"
    if policy == "None":
        conf = ResolvConf()
    elif policy == "ClusterFirst" and cluster_dns:
        ns = namespace_of(pod) or "default"
        cluster = (
            [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
            if cluster_domain
            else []
        )
        conf = ResolvConf(tuple(cluster_dns), _unique([*cluster, *host.searches]), CLUSTER_OPTIONS)
    else:
        if policy == "ClusterFirst":
            warnings.append(
                (
                    "MissingClusterDNS",
                    f'pod: "{_pod_ref(pod)}". kubelet does not have ClusterDNS IP configured '
                    'and cannot create Pod using "ClusterFirst" policy. '
                    'Falling back to "Default" policy.',
                )
            )
        conf = host
    extra = spec.get("dnsConfig")
    if extra:
        conf = ResolvConf(
            _unique([*conf.servers, *(extra.get("nameservers") or ())]),
            _unique([*conf.searches, *(extra.get("searches") or ())]),
            _merge_options(conf.options, extra.get("options") or ()),
        )
    return PodDNS(_fit_limits(conf, warnings), warnings)


def _fit_limits(conf: ResolvConf, warnings: list[tuple[str, str]]) -> ResolvConf:
    """At most 3 nameservers, 32 search domains and 2048 characters of search line, as
    upstream's kubelet cuts them (with a DNSConfigForming event)."""
    servers, searches = conf.servers, conf.searches
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warnings.append(
            (
                "DNSConfigForming",
                "Nameserver limits were exceeded, some nameservers have been omitted, "
                f"the applied nameserver line is: {' '.join(servers)}",
            )
        )
    cut = searches[:MAX_SEARCHES]
    while cut and len(" ".join(cut)) > MAX_SEARCH_CHARS:
        cut = cut[:-1]
    if cut != searches:
        searches = cut
        warnings.append(
            (
                "DNSConfigForming",
                "Search Line limits were exceeded, some search paths have been omitted, "
                f"the applied search line is: {' '.join(searches)}",
            )
        )
    return ResolvConf(servers, searches, conf.options)


def hostname(pod: Obj) -> str:
    """spec.hostname, else the pod's name, cut to a DNS label as upstream does."""
    spec = pod.get("spec") or {}
    return (spec.get("hostname") or name_of(pod))[:63].rstrip("-.")


def hosts_file(pod: Obj, pod_ips: Sequence[str], cluster_domain: str, host_hosts: str) -> str:
    """The pod's /etc/hosts: for a hostNetwork pod the host's; else localhost and the pod's
    own name at each of its IPs (with its FQDN, hostname.subdomain.ns.svc.DOMAIN, when it
    has a subdomain); then spec.hostAliases."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        text = HOST_NETWORK_HOSTS_HEADER + host_hosts
    else:
        text = HOSTS_HEADER + _LOCAL_HOSTS
        name = hostname(pod)
        subdomain = spec.get("subdomain")
        names = name
        if subdomain and cluster_domain:
            fqdn = f"{name}.{subdomain}.{namespace_of(pod)}.svc.{cluster_domain}"
            names = f"{fqdn}\t{name}"
        text += "".join(f"{ip}\t{names}\n" for ip in pod_ips)
    aliases = spec.get("hostAliases") or ()
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        text += "".join(
            f"{a.get('ip')}\t{chr(9).join(a.get('hostnames') or ())}\n" for a in aliases
        )
    return text


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def write_pod_files(
    pod_dir: Path,
    pod: Obj,
    pod_ips: Sequence[str],
    *,
    cluster_dns: Sequence[str],
    cluster_domain: str,
    resolv_conf: Path | None,
    hosts: Path = HOST_HOSTS,
) -> list[tuple[str, str]]:
    """Write the pod's resolv.conf and etc-hosts into its directory (the kubelet mounts them
    into each container, as upstream's etc-hosts); the Warning events owed."""
    dns = pod_dns(pod, cluster_dns, cluster_domain, parse_resolv_conf(_read(resolv_conf)))
    pod_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        (RESOLV_CONF, dns.conf.render()),
        (ETC_HOSTS, hosts_file(pod, pod_ips, cluster_domain, _read(hosts))),
    ):
        # Replaced whole: a container started meanwhile sees the old file or the new one.
        tmp = pod_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(pod_dir / name)
    return dns.warnings
