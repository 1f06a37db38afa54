"""Every node's Lease lapses at once: what the node lifecycle controller does about it.

Run: .venv/bin/python benches/node_lapse.py [--nodes 1000] [--observe 150]
         [--controller-code /work/main/python]

A fresh API server, `k8slite hollow-nodes --count N`, and a controller manager running only
the node lifecycle and taint eviction controllers (upstream's defaults: 40 s grace, 0.1
nodes/s eviction rate). Once the nodes are ready the hollow process is killed, as a
starved API server or a network partition would silence the kubelets, and every 5 s the
nodes are counted: Ready=Unknown, with a NoExecute taint (pods to be evicted), with a
NoSchedule one. --controller-code runs the controller manager from another tree (to
compare before and after a change). The last line is the figures as JSON, with the
controller manager's node_collector_* metrics at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import harness
from hollow_cluster import start_cluster


def count(nodes: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(Ready=Unknown, NoExecute-tainted, NoSchedule-tainted) nodes."""
    unknown = sum(
        1
        for n in nodes
        for c in n["status"].get("conditions") or ()
        if c["type"] == "Ready" and c["status"] == "Unknown"
    )

    def tainted(effect: str) -> int:
        return sum(
            1 for n in nodes if any(t["effect"] == effect for t in n["spec"].get("taints") or ())
        )

    return unknown, tainted("NoExecute"), tainted("NoSchedule")


def run(nodes: int, observe: float, code: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="k8slite-lapse-") as name:
        tmp = Path(name)
        env = dict(os.environ, PYTHONPATH=code) if code else None
        cluster = start_cluster(
            tmp, nodes, "nodelifecycle,taint-eviction-controller", scheduler=False, manager_env=env
        )
        try:
            time.sleep(15)  # a monitor pass or three with every node alive
            hollow = cluster.procs["hollow"]
            hollow.send_signal(signal.SIGKILL)
            hollow.wait()
            killed = time.monotonic()
            series = []
            ctx = harness.tls_context(cluster.server.data_dir / "pki")
            with httpx.Client(verify=ctx, timeout=60) as api:
                while time.monotonic() - killed < observe:
                    items = api.get(f"{cluster.server.url}/api/v1/nodes").json()["items"]
                    series.append([round(time.monotonic() - killed), *count(items)])
                    time.sleep(5)
            text = (tmp / "manager.log").read_text(errors="replace")
            # A self-signed serving certificate, as upstream's default.
            answer = httpx.get(f"{cluster.manager_url}/metrics", verify=False, timeout=30)
            metrics = [m for m in answer.text.splitlines() if m.startswith("node_collector_")]
            first_unknown = next((s[0] for s in series if s[1]), None)
            all_unknown = next((s[0] for s in series if s[1] == nodes), None)
            return {
                "nodes": nodes,
                "controller_code": code or "this tree",
                "series_t_unknown_noexecute_noschedule": series,
                "first_unknown_s": first_unknown,
                "all_unknown_s": all_unknown,
                "max_noexecute": max(s[2] for s in series),
                "noexecute_at_end": series[-1][2],
                "master_disruption_mode": "Entering master disruption mode" in text,
                "node_collector": metrics,
            }
        finally:
            cluster.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--observe", type=float, default=150.0, help="seconds after the kill")
    p.add_argument("--controller-code", help="PYTHONPATH for the controller manager")
    a = p.parse_args()
    harness.emit(run(a.nodes, a.observe, a.controller_code))


if __name__ == "__main__":
    main()
