"""Benchmark: the per-request cost of bearer-token authentication, cold and cached.

A real ApiCore on RocksDB holds a ServiceAccount and a Pod; tokens are signed with a fresh
RSA key (as sa.key) and checked by the API server's authenticator through the same entry
point a request takes (the Authorization header of an ASGI scope). Cold: a new token each
time (JWT parse, RS256 signature, claims). Cached: the same token again (expiry, and the
account and pod still there with their uids, from the watch cache). Figures last, as one
JSON line.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from k8slite.apiserver.authn import Authenticator
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.registry import DeleteOptions
from k8slite.apiserver.tokenauth import TokenAuthenticator
from k8slite.serviceaccount import claims
from k8slite.serviceaccount.jwt import sign
from k8slite.storage.rocksdb import RocksStore

COLD = 2_000
CACHED = 200_000
ISSUER = claims.DEFAULT_ISSUER


def _scope(token: str) -> dict[str, Any]:
    return {"headers": [(b"authorization", f"Bearer {token}".encode())], "extensions": {}}


def _per_call(fn: Any, items: list[Any]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items)


async def main() -> dict[str, float]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with tempfile.TemporaryDirectory() as tmp:
        async with RocksStore(Path(tmp) / "db") as store:
            core = ApiCore(store)
            core.warm()
            await core.ensure_system_namespaces()
            accounts = core.registries[("", "serviceaccounts")]
            pods = core.registries[("", "pods")]
            await accounts.create("default", {"metadata": {"name": "bench"}})
            await pods.create(
                "default",
                {
                    "metadata": {"name": "p"},
                    "spec": {
                        "serviceAccountName": "bench",
                        "containers": [{"name": "c", "image": "busybox:1.35"}],
                    },
                },
            )
            account, pod = accounts.get("default", "bench"), pods.get("default", "p")
            tokens = TokenAuthenticator(core, [key.public_key()], [ISSUER], [ISSUER])
            authn = Authenticator(tokens.authenticate)
            now = int(time.time())

            def token() -> str:
                body = claims.bound(
                    issuer=ISSUER,
                    audiences=[ISSUER],
                    now=now,
                    expires=now + 3600,
                    account=account,
                    pod=pod,
                )
                return sign(key, body)

            fresh = [_scope(token()) for _ in range(COLD)]
            cold = _per_call(authn.authenticate, fresh)
            hot = _scope(token())
            assert authn.authenticate(hot).name == "system:serviceaccount:default:bench"
            runs = [_per_call(authn.authenticate, [hot] * (CACHED // 5)) for _ in range(5)]
            # The pod gone, the cached token stops at once.
            await pods.delete("default", "p", DeleteOptions(grace_period_seconds=0))
            try:
                authn.authenticate(hot)
                raise AssertionError("a deleted pod's token still authenticated")
            except Exception as e:  # noqa: BLE001 - the 401 ApiError is what we expect
                assert "Unauthorized" in str(e), e
    figures = {
        "cold_us": round(cold * 1e6, 1),
        "cached_us": round(statistics.median(runs) * 1e6, 2),
        "cached_best_us": round(min(runs) * 1e6, 2),
    }
    print(f"cold (new token, RS256 verify + claims): {figures['cold_us']} us/request")
    print(f"cached (same token, uids re-checked):    {figures['cached_us']} us/request")
    return figures


if __name__ == "__main__":
    print(json.dumps(trio.run(main)))
