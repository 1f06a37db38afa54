"""The kubelet's streaming protocol choices and the Statuses it ends exec sessions with."""

from __future__ import annotations

from k8slite.component.serving import Response
from k8slite.kubelet import streaming


def test_the_clients_first_known_protocol_wins() -> None:
    offered = ["v6.channel.k8s.io", streaming.V4, streaming.V5]
    assert streaming.negotiate(offered, streaming.EXEC_PROTOCOLS) == streaming.V4
    # No Sec-WebSocket-Protocol at all: channel.k8s.io, unnamed (upstream's default).
    assert streaming.negotiate([], streaming.EXEC_PROTOCOLS) is None
    # kubectl's port-forward tunnel is not an exec protocol.
    refused = streaming.negotiate([streaming.SPDY_TUNNEL], streaming.EXEC_PROTOCOLS)
    assert isinstance(refused, Response) and refused.status == 400
    assert isinstance(refused.body, bytes) and b"unable to negotiate protocol" in refused.body


def test_exit_statuses_as_kubectl_reads_them() -> None:
    assert streaming.success_status() == {"metadata": {}, "status": "Success"}
    failed = streaming.exit_status(["sh", "-c", "exit 3"], 3)
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert failed["message"] == (
        "command terminated with non-zero exit code: error executing command "
        "[sh -c exit 3], exit code 3"
    )
