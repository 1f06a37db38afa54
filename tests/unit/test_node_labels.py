"""The kubelet label set: what a node may label itself with, at registration and by flag."""

from __future__ import annotations

import pytest

from k8slite.api.nodelabels import node_may_set
from k8slite.cmd.kubelet import parse_args


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("kubernetes.io/hostname", True),
        ("beta.kubernetes.io/instance-type", True),
        ("topology.kubernetes.io/zone", True),
        ("kubelet.kubernetes.io/anything", True),
        ("sub.node.kubernetes.io/anything", True),
        ("example.com/tier", True),
        ("tier", True),
        ("node-role.kubernetes.io/control-plane", False),
        ("node-restriction.kubernetes.io/pool", False),
        ("sub.node-restriction.kubernetes.io/pool", False),
        ("kubernetes.io/role", False),
        ("k8s.io/x", False),
        ("sub.k8s.io/x", False),
    ],
)
def test_node_may_set(key: str, allowed: bool) -> None:
    assert node_may_set(key) is allowed


def test_kubelet_refuses_node_labels_the_api_server_would_refuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = "tier=a,node-role.kubernetes.io/control-plane=,kubernetes.io/hostname=n1"
    with pytest.raises(SystemExit):
        parse_args(["--node-name", "n1", "--node-labels", labels])
    err = capsys.readouterr().err
    assert (
        "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: "
        "[node-role.kubernetes.io/control-plane]\n--node-labels in the 'kubernetes.io' "
        "namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io)"
    ) in err
    config, _ = parse_args(["--node-name", "n1", "--node-labels", "tier=a,kubernetes.io/os=x"])
    assert config.node_labels == {"tier": "a", "kubernetes.io/os": "x"}
