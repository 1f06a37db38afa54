"""The kubelet API's authorization: upstream's request attributes, and the review cache."""

from __future__ import annotations

import pytest

from k8slite.kubelet.authz import (
    AUTHORIZED_TTL,
    UNAUTHORIZED_TTL,
    AuthorizationError,
    Authorizer,
    attributes,
)


@pytest.mark.parametrize(
    ("method", "path", "verb", "subresources"),
    [
        ("GET", "/pods", "get", ("pods", "proxy")),
        ("GET", "/healthz", "get", ("healthz", "proxy")),
        ("GET", "/configz", "get", ("configz", "proxy")),
        ("GET", "/metrics", "get", ("metrics",)),
        ("GET", "/metrics/cadvisor", "get", ("metrics",)),
        ("GET", "/stats/summary", "get", ("stats",)),
        ("GET", "/logs/syslog", "get", ("log",)),
        ("POST", "/checkpoint/ns/pod/c", "create", ("checkpoint",)),
        ("GET", "/containerLogs/ns/pod/c", "get", ("proxy",)),
        ("POST", "/exec/ns/pod/c", "create", ("proxy",)),
        ("PUT", "/", "update", ("proxy",)),
        ("PATCH", "/x", "patch", ("proxy",)),
        ("DELETE", "/x", "delete", ("proxy",)),
        ("OPTIONS", "/pods", "", ("pods", "proxy")),
    ],
)
def test_attributes_as_upstream(
    method: str, path: str, verb: str, subresources: tuple[str, ...]
) -> None:
    assert attributes(method, path) == (verb, subresources)


class Reviews:
    """A fake API server: which (user, subresource) pairs are allowed; the calls it got."""

    def __init__(self, allowed: set[tuple[str, str]], fail: bool = False) -> None:
        self.allowed = allowed
        self.fail = fail
        self.calls: list[tuple[str, str, str]] = []
        self.groups: list[frozenset[str]] = []

    async def __call__(
        self, user: str, groups: frozenset[str], verb: str, subresource: str
    ) -> bool:
        self.calls.append((user, verb, subresource))
        self.groups.append(groups)
        if self.fail:
            raise AuthorizationError("unreachable")
        return (user, subresource) in self.allowed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


G = frozenset({"system:authenticated"})


async def test_fallback_asks_in_order_and_stops_at_the_first_yes() -> None:
    reviews = Reviews({("alice", "proxy")})
    authz = Authorizer(reviews, Clock())
    assert await authz.allowed("alice", G, "get", ("pods", "proxy"))
    assert reviews.calls == [("alice", "get", "pods"), ("alice", "get", "proxy")]
    reviews.calls.clear()
    reviews.allowed.add(("bob", "pods"))
    assert await authz.allowed("bob", G, "get", ("pods", "proxy"))
    assert reviews.calls == [("bob", "get", "pods")]


async def test_answers_are_cached_for_upstreams_ttls() -> None:
    reviews, clock = Reviews({("alice", "proxy")}), Clock()
    authz = Authorizer(reviews, clock)
    assert await authz.allowed("alice", G, "get", ("proxy",))
    assert not await authz.allowed("bob", G, "get", ("proxy",))
    assert len(reviews.calls) == 2
    # Within the TTLs nothing is asked again, even when the answer changed meanwhile.
    reviews.allowed = {("bob", "proxy")}
    clock.now += UNAUTHORIZED_TTL - 1
    assert await authz.allowed("alice", G, "get", ("proxy",))
    assert not await authz.allowed("bob", G, "get", ("proxy",))
    assert len(reviews.calls) == 2
    # A denial is asked again after 30 s, an approval after 5 minutes.
    clock.now += 2
    assert await authz.allowed("bob", G, "get", ("proxy",))
    assert await authz.allowed("alice", G, "get", ("proxy",))
    assert len(reviews.calls) == 3
    clock.now += AUTHORIZED_TTL
    assert not await authz.allowed("alice", G, "get", ("proxy",))
    assert len(reviews.calls) == 4


async def test_groups_and_verbs_are_part_of_the_question() -> None:
    reviews = Reviews({("alice", "proxy")})
    authz = Authorizer(reviews, Clock())
    await authz.allowed("alice", G, "get", ("proxy",))
    await authz.allowed("alice", G | {"ops"}, "get", ("proxy",))
    await authz.allowed("alice", G, "create", ("proxy",))
    assert len(reviews.calls) == 3


async def test_a_failed_review_is_an_error_and_is_not_cached() -> None:
    reviews = Reviews({("alice", "proxy")}, fail=True)
    authz = Authorizer(reviews, Clock())
    with pytest.raises(AuthorizationError):
        await authz.allowed("alice", G, "get", ("proxy",))
    reviews.fail = False
    assert await authz.allowed("alice", G, "get", ("proxy",))
    assert len(reviews.calls) == 2


async def test_kubelet_api_answers_as_upstream_when_it_cannot_ask() -> None:
    from prometheus_client import CollectorRegistry

    from k8slite.apiserver.authn import UserInfo
    from k8slite.component.serving import Request
    from k8slite.kubelet.server import KubeletApi

    reviews = Reviews(set(), fail=True)
    api = KubeletApi(
        None,
        None,
        CollectorRegistry(),  # type: ignore[arg-type]
        Authorizer(reviews, Clock()),
    ).server()
    alice = UserInfo("alice", ("ops", "system:authenticated"))
    req = Request("GET", "/pods", {}, {}, alice)
    r = await api.handle(req)
    assert r.status == 500
    assert isinstance(r.body, bytes)
    assert r.body.decode().strip() == (
        "Authorization error (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])"
    )
    # The review carried the certificate's groups.
    assert reviews.calls == [("alice", "get", "pods")]
    assert reviews.groups == [frozenset({"ops", "system:authenticated"})]
    reviews.fail = False
    r = await api.handle(req)
    assert r.status == 403
    assert isinstance(r.body, bytes)
    assert r.body.decode().strip() == (
        "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])"
    )
    # Without a certificate: 401, before anything is asked.
    asked = len(reviews.calls)
    assert (await api.handle(Request("GET", "/healthz", {}, {}))).status == 401
    assert len(reviews.calls) == asked
    # Without an authorizer only the fast paths are open.
    bare = KubeletApi(None, None, CollectorRegistry()).server()  # type: ignore[arg-type]
    assert (await bare.handle(req)).status == 403
