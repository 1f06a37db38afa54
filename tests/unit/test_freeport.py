"""Free ports for `up --port 0` and the tests: outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from k8slite import freeport
from k8slite.freeport import FREE_PORTS, bindable, free_port


def test_free_ports_come_from_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freeport, "_ephemeral_start", lambda: 32768)  # Linux's default
    ports = {free_port() for _ in range(50)}
    assert all(p in FREE_PORTS for p in ports)
    udp_ports = {free_port(udp=True) for _ in range(20)}
    assert all(p in FREE_PORTS for p in udp_ports)


def test_a_listener_makes_a_port_busy() -> None:
    port = free_port()
    assert bindable("127.0.0.1", port) == port
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert bindable("127.0.0.1", port) is None


def test_a_bound_udp_port_is_busy_for_dns() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", free_port(udp=True)))
        port = s.getsockname()[1]
        assert bindable("127.0.0.1", port) is not None  # TCP alone is still free
        assert bindable("127.0.0.1", port, udp=True) is None


def test_a_kernel_with_a_low_ephemeral_range_falls_back_to_any_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(freeport, "_ephemeral_start", lambda: 10000)
    port = free_port()
    assert bindable("127.0.0.1", port) == port


def test_no_port_is_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pick is only probed, not held: picks in a row must still differ."""
    monkeypatch.setattr(freeport, "FREE_PORTS", range(FREE_PORTS.start, FREE_PORTS.start + 40))
    ports = [free_port() for _ in range(30)]
    assert len(set(ports)) == len(ports)
