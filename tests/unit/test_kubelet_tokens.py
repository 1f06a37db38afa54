"""The kubelet's token cache: one TokenRequest per pod token until 80% of its lifetime (or
24 h) has passed, the old token kept while renewal fails, and nothing kept for a gone pod."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from k8slite.kubelet.tokens import MAX_TTL, TokenManager


class Issuer:
    """Answers token requests as the API server does, counting them."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.issued = 0
        self.fail = False

    async def __call__(
        self, namespace: str, account: str, audiences: list[str], expiration: int, pod: Any
    ) -> tuple[str, float] | None:
        if self.fail:
            raise RuntimeError("API server unreachable")
        self.issued += 1
        return f"token-{self.issued}", time.time() + self.lifetime


def _pod(uid: str) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": uid}}


def test_cached_until_renewal_time() -> None:
    issuer = Issuer(lifetime=3600)
    manager = TokenManager(issuer)

    async def main() -> None:
        first = await manager.get("ns", "default", [], 3607, _pod("u1"))
        again = await manager.get("ns", "default", [], 3607, _pod("u1"))
        assert first == again == "token-1"
        # Another pod, or another audience, is another token.
        assert await manager.get("ns", "default", [], 3607, _pod("u2")) == "token-2"
        assert await manager.get("ns", "default", ["vault"], 3607, _pod("u1")) == "token-3"

    trio.run(main)
    due = manager.next_renewal("u1")
    assert due is not None
    assert due == pytest.approx(time.time() + 0.8 * 3600, abs=5)
    manager.forget("u1")
    assert manager.next_renewal("u1") is None
    assert manager.next_renewal("u2") is not None


def test_long_lived_tokens_renew_within_a_day() -> None:
    manager = TokenManager(Issuer(lifetime=365 * 86400))
    trio.run(manager.get, "ns", "default", [], 3607, _pod("u"))
    due = manager.next_renewal("u")
    assert due is not None
    assert due == pytest.approx(time.time() + MAX_TTL, abs=5)


def test_due_token_is_renewed_and_kept_while_renewal_fails() -> None:
    issuer = Issuer(lifetime=600)
    # A fraction this small makes the token due at once (the kubelet's test knob).
    manager = TokenManager(issuer, refresh_fraction=1e-9)

    async def main() -> None:
        assert await manager.get("ns", "default", [], 600, _pod("u")) == "token-1"
        await trio.sleep(0.01)
        assert await manager.get("ns", "default", [], 600, _pod("u")) == "token-2"
        issuer.fail = True
        # Still valid for ten minutes: served while the API server cannot be reached.
        assert await manager.get("ns", "default", [], 600, _pod("u")) == "token-2"
        manager.forget("u")
        with pytest.raises(RuntimeError):
            await manager.get("ns", "default", [], 600, _pod("u"))

    trio.run(main)
