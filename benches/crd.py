"""Custom resource creates per second (a realistic structural schema) vs ConfigMap creates on
the same server, and the time from a CRD's creation to its first custom resource accepted.

Run: .venv/bin/python benches/crd.py [--requests 6000] [--clients 20] [--runs 3] [--cel]
(--cel: the schema carries three CEL x-kubernetes-validations rules, one per container.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import harness

GROUP = "bench.example.com"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Batches per run, alternating ConfigMaps and custom resources.
ROUNDS = 6


# Three CEL rules like operators write: a cross-field check, a macro over a list, and one
# evaluated on every list item.
CEL_RULES = {
    "spec": [
        {"rule": "self.replicas <= 50 || self.paused", "message": "at most 50 replicas"},
        {
            "rule": "self.containers.all(c, c.name != 'init')",
            "message": "init is a reserved container name",
        },
    ],
    "container": [
        {
            "rule": "!has(self.port) || self.port != 22",
            "messageExpression": "'port 22: ' + self.name",
        }
    ],
}


def crd(plural: str, kind: str, cel: bool = False) -> dict[str, Any]:
    """A CRD like operators ship: nested spec, enums, patterns, bounds, defaults, list-maps."""
    container = {
        "type": "object",
        "required": ["name", "image"],
        "properties": {
            "name": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9-]+$"},
            "image": {"type": "string", "minLength": 1},
            "pullPolicy": {
                "type": "string",
                "enum": ["Always", "IfNotPresent", "Never"],
                "default": "IfNotPresent",
            },
            "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
            "resources": {
                "type": "object",
                "properties": {
                    "cpu": {"x-kubernetes-int-or-string": True},
                    "memory": {"x-kubernetes-int-or-string": True},
                },
            },
        },
    }
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["replicas", "containers"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1},
                    "paused": {"type": "boolean", "default": False},
                    "schedule": {"type": "string", "pattern": r"^(\S+\s+){4}\S+$"},
                    "containers": {
                        "type": "array",
                        "maxItems": 8,
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": container,
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "phase": {"type": "string"},
                    "replicas": {"type": "integer"},
                },
            },
        },
    }
    if cel:
        schema["properties"]["spec"]["x-kubernetes-validations"] = CEL_RULES["spec"]
        container["x-kubernetes-validations"] = CEL_RULES["container"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}
                    ],
                }
            ],
        },
    }


def custom_resource(name: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"app": "web", "tier": "frontend"}},
        "spec": {
            "replicas": 3,
            "schedule": "*/5 * * * *",
            "labels": {"team": "payments", "env": "production"},
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/web:2.14.1",
                    "port": 8080,
                    "env": {"MODE": "production", "LOG_LEVEL": "info"},
                    "resources": {"cpu": "500m", "memory": "512Mi"},
                },
                {"name": "sidecar", "image": "registry.example.com/proxy:1.4", "port": 15001},
            ],
        },
    }


def configmap(name: str) -> dict[str, Any]:
    """A ConfigMap of about the same size as the custom resource."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "web", "tier": "frontend"}},
        "data": {
            "replicas": "3",
            "schedule": "*/5 * * * *",
            "team": "payments",
            "env": "production",
            "web": "registry.example.com/web:2.14.1 port=8080 MODE=production LOG_LEVEL=info",
            "sidecar": "registry.example.com/proxy:1.4 port=15001 cpu=500m memory=512Mi",
        },
    }


def load(
    server: harness.Server,
    pki: Path,
    path: str,
    make: Callable[[str], dict[str, Any]],
    requests: int,
    clients: int,
) -> float:
    """Creates per second from `clients` keep-alive connections; fails on any error."""
    ctx = harness.tls_context(pki)
    per = requests // clients
    errors: list[str] = []

    def run(t: int) -> None:
        conn = harness.Connection(server.host, server.port, ctx)
        for i in range(per):
            status, body = conn.request("POST", path, json.dumps(make(f"o-{t}-{i}")).encode())
            if status != 201:
                errors.append(body.decode()[:200])
        conn.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} failed creates, first: {errors[0]}")
    return per * clients / elapsed


def time_to_first(server: harness.Server, pki: Path, n: int) -> float:
    """Seconds from POSTing a new CRD to the first accepted create of its kind."""
    conn = harness.Connection(server.host, server.port, harness.tls_context(pki))
    plural, kind = f"probes{n}", f"Probe{n}"
    start = time.perf_counter()
    status, body = conn.request("POST", CRDS, json.dumps(crd(plural, kind)).encode())
    assert status == 201, body
    path = f"/apis/{GROUP}/v1/namespaces/default/{plural}"
    while True:
        status, _ = conn.request("POST", path, json.dumps(custom_resource("first", kind)).encode())
        if status == 201:
            elapsed = time.perf_counter() - start
            conn.close()
            return elapsed
        time.sleep(0.005)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=6000)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cel", action="store_true", help="three CEL rules in the schema")
    a = p.parse_args()
    ratios, crs, cms, firsts = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(a.runs):
            data = Path(tmp) / f"api{run}"
            server = harness.start_apiserver(data)
            pki = data / "pki"
            try:
                firsts.append(time_to_first(server, pki, run))
                conn = harness.Connection(server.host, server.port, harness.tls_context(pki))
                status, body = conn.request(
                    "POST", CRDS, json.dumps(crd("apps", "App", a.cel)).encode()
                )
                assert status == 201, body
                conn.close()
                # Alternate short batches of each so that load from elsewhere on the
                # machine falls on both alike.
                cm_s = cr_s = 0.0
                per = a.requests // ROUNDS
                for r in range(ROUNDS):
                    cm_s += per / load(
                        server,
                        pki,
                        "/api/v1/namespaces/default/configmaps",
                        lambda name, r=r: configmap(f"{name}-{r}"),
                        per,
                        a.clients,
                    )
                    cr_s += per / load(
                        server,
                        pki,
                        f"/apis/{GROUP}/v1/namespaces/default/apps",
                        lambda name, r=r: custom_resource(f"{name}-{r}", "App"),
                        per,
                        a.clients,
                    )
                cm, cr = per * ROUNDS / cm_s, per * ROUNDS / cr_s
            finally:
                server.stop()
            cms.append(cm)
            crs.append(cr)
            ratios.append(cr / cm)
            print(f"run {run}: custom resources {cr:.0f}/s, configmaps {cm:.0f}/s")
    ratio = harness.median(ratios)
    print(f"custom resource / configmap creates: {ratio:.2f} (goal >= 0.80)")
    print(f"CRD to first custom resource: {harness.median(firsts) * 1e3:.0f} ms (goal < 1 s)")
    harness.emit(
        {
            "bench": "crd-cel" if a.cel else "crd",
            "clients": a.clients,
            "requests": a.requests,
            "runs": a.runs,
            "cr_creates_per_s": round(harness.median(crs)),
            "configmap_creates_per_s": round(harness.median(cms)),
            "cr_to_configmap_ratio": round(ratio, 3),
            "crd_to_first_cr_ms": round(harness.median(firsts) * 1e3, 1),
        }
    )


if __name__ == "__main__":
    main()
