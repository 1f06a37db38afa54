"""What a pod worker knows of its pod: the object, its containers' records, sandbox, wake-ups."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from k8slite.component.objects import Obj
from k8slite.kubelet.runtime.base import Sandbox
from k8slite.kubelet.status import ContainerRecord, PodView

# Pending wake-up times kept per pod: enough for every back-off it can have at once.
_MAX_TIMERS = 16


@dataclass
class PodState:
    """The per-pod state that the pod worker and its container operations act on."""

    pod: Obj
    view: PodView
    records: dict[str, ContainerRecord]
    sandbox: Sandbox | None = None
    attempt: int = 0  # the sandbox's, counting re-creations
    volume_paths: dict[str, str] | None = None
    image_backoff: dict[str, tuple[float, float]] = field(default_factory=dict)  # (delay, until)
    timers: list[float] = field(default_factory=list)  # trio times to sync again at
    woken: trio.Event = field(default_factory=trio.Event)

    @classmethod
    def of(cls, pod: Obj, view: PodView) -> PodState:
        spec = pod.get("spec") or {}
        records: dict[str, ContainerRecord] = {}
        for c in spec.get("initContainers") or ():
            records[c["name"]] = ContainerRecord(
                c["name"], init=True, sidecar=c.get("restartPolicy") == "Always"
            )
        for c in spec.get("containers") or ():
            records[c["name"]] = ContainerRecord(c["name"])
        state = cls(pod, view, records)
        state.add_ephemeral()
        return state

    def add_ephemeral(self) -> None:
        """Records for ephemeral containers added to the pod since (they are never removed)."""
        for c in (self.pod.get("spec") or {}).get("ephemeralContainers") or ():
            if c["name"] not in self.records:
                self.records[c["name"]] = ContainerRecord(c["name"], ephemeral=True)

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]  # type: ignore[no-any-return]

    @property
    def namespace(self) -> str:
        return self.pod["metadata"].get("namespace") or "default"  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]  # type: ignore[no-any-return]

    def wake(self) -> None:
        self.woken.set()

    def wake_at(self, when: float) -> None:
        """Sync again at trio time `when` at the latest."""
        self.timers.append(when)
        if len(self.timers) > _MAX_TIMERS:
            self.timers = sorted(self.timers)[: _MAX_TIMERS // 2]

    async def wait(self, deadline: float) -> None:
        """Until woken, a timer expires or `deadline` (trio time) passes."""
        now = trio.current_time()
        fired = any(t <= now for t in self.timers)
        self.timers = [t for t in self.timers if t > now]
        # A timer that came due while the last sync ran is due now, not dropped.
        if not fired:
            with trio.move_on_at(min(min(self.timers, default=deadline), deadline)):
                await self.woken.wait()
        self.woken = trio.Event()

    def container_spec(self, name: str) -> Obj:
        spec = self.pod.get("spec") or {}
        for group in ("initContainers", "containers", "ephemeralContainers"):
            for c in spec.get(group) or ():
                if c["name"] == name:
                    return c  # type: ignore[no-any-return]
        raise KeyError(name)
