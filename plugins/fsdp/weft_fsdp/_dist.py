"""Making every rank agree to enter an all-rank operation (a checkpoint save or load)
within a bounded time.

A plain barrier is not enough here: under the seed's ``if fabric.is_global_zero:
fabric.save(...)`` guard, rank 0 would wait in save while rank 1 waits in some later
barrier, and the two barriers would match each other, letting rank 0 run into DCP's
collectives alone. The agreement uses the process group's key-value store with keys
named after the operation, so only ranks entering the *same* operation count, and the
error names the ranks that are missing. (The process group itself and Fabric's
collectives, and ``weft.distributed.collective_timeout`` for the strategy's ``timeout``, come from
:mod:`weft.distributed`; nothing there agrees on a named operation through the store, hence this module.)
"""

from __future__ import annotations

import datetime
import time
import torch.distributed as dist

from weft.errors import CollectiveTimeoutError


class Agreement:
    """Counts the all-rank operations of one strategy, per operation name, so each call gets
    its own store keys (and a call that failed on one rank does not shift the others' counts)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def enter(self, what: str, timeout: datetime.timedelta, hint: str = "") -> None:
        """Return once every rank called ``enter`` for the same operation; raise otherwise.

        :param what: the operation, e.g. ``"fabric.save"`` (must be the same string on every rank).
        :param timeout: how long to wait for the other ranks.
        :param hint: appended to the error: what the user should change.
        """
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return
        count = self._counts[what] = self._counts.get(what, 0) + 1
        store = dist.distributed_c10d._get_default_store()
        rank, world = dist.get_rank(), dist.get_world_size()
        prefix = f"weft_fsdp/{what}/{count}"
        store.set(f"{prefix}/{rank}", b"1")
        keys = [f"{prefix}/{r}" for r in range(world)]
        deadline = time.monotonic() + timeout.total_seconds()
        # Poll rather than block in store.wait, so the error can name who is missing.
        delay = 0.005
        while True:
            missing = [r for r, key in enumerate(keys) if not store.check([key])]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise CollectiveTimeoutError(
                    f"{what} on rank {rank} waited {timeout.total_seconds():g}s for rank(s) {missing}, which never "
                    f"called it. {what} with a sharded strategy needs every rank to call it. {hint}".rstrip()
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
