"""Benchmark: `k8slite join` start to node Ready, on loopback (fake runtime, no proxy).

A real API server with bootstrap tokens and a controller manager running the bootstrap
signer, csrapproving and csrsigning; each run makes a token, runs `k8slite join` as a user
does (discovery, TLS bootstrap, the kubelet under a background supervisor) and times it
until the command returns, which it does once the Node is Ready; then `k8slite stop`.
The median of RUNS runs, with the phases of the last one from its output, as one JSON line
last. Goal: under 10 s.

    PYTHONPATH=$PWD/python .venv/bin/python benches/join.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from k8slite import bootstraptoken as bt
from tests.conftest import start_apiserver
from tests.integration.controller_harness import start_controller_manager

RUNS = 5


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="k8slite-bench-join-"))
    server = start_apiserver(
        root / "data",
        "--enable-bootstrap-token-auth",
        f"--anonymous-auth-paths={bt.CLUSTER_INFO_PATH}",
    )
    manager = start_controller_manager(
        server,
        "--controllers=csrapproving,csrsigning,bootstrapsigner,tokencleaner",
        f"--cluster-signing-cert-file={server.pki / 'ca.pem'}",
        f"--cluster-signing-key-file={server.pki / 'ca.key'}",
    )
    ca_hash = bt.ca_cert_hash(server.ca.read_bytes())
    times: list[float] = []
    try:
        with server.client() as admin:
            for i in range(RUNS):
                token_id, secret = bt.parse(bt.generate()) or ("", "")
                token = bt.TokenSecret(
                    token_id,
                    secret,
                    expiration=bt.format_time(datetime.now(UTC) + timedelta(hours=1)),
                    usages=list(bt.USAGES),
                    extra_groups=[bt.DEFAULT_NODE_GROUP],
                )
                r = admin.post("/api/v1/namespaces/kube-system/secrets", json=token.to_secret())
                r.raise_for_status()
                # As a user would: only once cluster-info carries the token's signature.
                _wait_signed(admin, token_id)
                data = root / f"node-{i}"
                began = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "k8slite.cmd.k8slite", "join"]
                    + ["--server", server.url, "--token", token.token]
                    + ["--discovery-token-ca-cert-hash", ca_hash, "--node-name", f"bench-{i}"]
                    + ["--runtime", "fake", "--no-proxy", "--kubelet-port", "0"]
                    + ["--data-dir", str(data)],
                    capture_output=True,
                    text=True,
                    timeout=180,
                )
                took = time.monotonic() - began
                if done.returncode != 0:
                    raise SystemExit(f"join failed: {done.stderr}")
                times.append(took)
                print(f"run {i + 1}: {took:.2f}s", flush=True)
                subprocess.run(
                    [sys.executable, "-m", "k8slite.cmd.k8slite", "stop", "--data-dir", str(data)],
                    capture_output=True,
                    timeout=120,
                )
    finally:
        manager.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "join_to_ready",
                "runs": RUNS,
                "median_s": round(statistics.median(times), 2),
                "min_s": round(min(times), 2),
                "max_s": round(max(times), 2),
                "goal_s": 10,
            }
        )
    )


def _wait_signed(admin: httpx.Client, token_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cm = admin.get(bt.CLUSTER_INFO_PATH).json()
        if f"{bt.JWS_PREFIX}{token_id}" in (cm.get("data") or {}):
            return
        time.sleep(0.1)
    raise SystemExit("cluster-info was not signed with the token")


if __name__ == "__main__":
    main()
