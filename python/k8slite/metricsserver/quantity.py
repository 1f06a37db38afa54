"""metrics.k8s.io's quantities as upstream serializes them: "123n", "5m", "45Ki", "15.5s"."""

from __future__ import annotations

_CPU_SUFFIXES = (("k", 10**12), ("", 10**9), ("m", 10**6), ("u", 10**3), ("n", 1))
_BINARY_SUFFIXES = (
    ("Ei", 2**60),
    ("Pi", 2**50),
    ("Ti", 2**40),
    ("Gi", 2**30),
    ("Mi", 2**20),
    ("Ki", 2**10),
)


def cpu(nanocores: int) -> str:
    """A CPU quantity from nanocores, in the largest unit that keeps it whole."""
    if nanocores == 0:
        return "0"
    for suffix, factor in _CPU_SUFFIXES:
        if nanocores % factor == 0:
            return f"{nanocores // factor}{suffix}"
    return f"{nanocores}n"


def memory(size: int) -> str:
    """A binary-SI memory quantity: "45Ki" when whole, else plain bytes."""
    if size == 0:
        return "0"
    for suffix, factor in _BINARY_SUFFIXES:
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


def duration(seconds: float) -> str:
    """Go's time.Duration String() of a window, to the millisecond: "15s", "1m0.5s"."""
    ms = round(seconds * 1000)
    minutes, ms = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    if ms and ms < 1000:
        return f"{ms}ms"
    return f"{secs}s"
