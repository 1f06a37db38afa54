"""The pod lifecycle event generator: relist the runtime, wake the workers of pods that changed."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import trio

from k8slite.kubelet.runtime.base import ContainerRuntimeError, Runtime

log = logging.getLogger(__name__)


class Relister:
    """Upstream's generic PLEG: every period, one list of the node's containers.

    A container that appeared, vanished or changed state wakes its pod's worker, so an exit
    is noticed within a period without a worker polling its own containers.
    """

    def __init__(self, runtime: Runtime, wake: Callable[[str], None], period: float) -> None:
        self.runtime = runtime
        self.wake = wake
        self.period = period
        self.states: dict[str, tuple[str, str]] = {}  # container id -> (pod uid, state)
        self.healthy = True
        self.last_error = ""

    def counts(self) -> dict[str, int]:
        """Containers by state, from the last relist (for kubelet_running_containers)."""
        return dict(Counter(state for _, state in self.states.values()))

    async def relist(self) -> None:
        try:
            infos = await self.runtime.list_containers()
        except ContainerRuntimeError as e:
            if self.healthy:
                log.warning("relisting containers failed: %s", e)
            self.healthy, self.last_error = False, e.message
            return
        self.healthy, self.last_error = True, ""
        now = {i.id: (i.pod_uid, str(i.state)) for i in infos}
        # A container seen for the first time running (or just created) was started by its
        # worker, which knows; waking it would only cost inspections. Exits, vanishings and
        # other changes do wake it.
        changed = {
            uid
            for cid, (uid, state) in now.items()
            if (cid in self.states and self.states[cid] != (uid, state))
            or (cid not in self.states and state == "exited")
        }
        changed |= {uid for cid, (uid, _) in self.states.items() if cid not in now}
        self.states = now
        for uid in changed:
            self.wake(uid)

    async def run(self) -> None:
        while True:
            await self.relist()
            await trio.sleep(self.period)
