"""Process-group plumbing the FSDP strategy needs: start the group, and make every rank
agree to enter an all-rank operation (a checkpoint) within a bounded time.

The agreement uses the process group's key-value store with keys named after the
operation, so a rank that is inside a *different* collective cannot be mistaken
for one that arrived, and the error names the ranks that are missing.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

import torch
import torch.distributed as dist

from weft.errors import CollectiveTimeoutError, MisuseError


def as_timedelta(timeout: float | datetime.timedelta) -> datetime.timedelta:
    return timeout if isinstance(timeout, datetime.timedelta) else datetime.timedelta(seconds=float(timeout))


def init_process_group(fabric: Any, backend: str, timeout: datetime.timedelta) -> None:
    """Join (or create) the default process group of ``fabric.world_size`` ranks, over TCP on the
    environment's main address."""
    if dist.is_initialized():
        return
    hook = fabric.hook
    address = hook.weft_environment_main_address() or "127.0.0.1"
    port = hook.weft_environment_main_port()
    # Child processes of a launcher read these too (e.g. DCP's own helpers).
    os.environ.setdefault("MASTER_ADDR", str(address))
    os.environ.setdefault("MASTER_PORT", str(port))
    kwargs: dict[str, Any] = {}
    if backend == "nccl" and fabric.device.type == "cuda":
        kwargs["device_id"] = fabric.device
    dist.init_process_group(
        backend,
        init_method=f"tcp://{address}:{port}",
        rank=fabric.global_rank,
        world_size=fabric.world_size,
        timeout=timeout,
        **kwargs,
    )


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


def require_group(what: str) -> None:
    if not dist.is_initialized():
        raise MisuseError(f"{what} needs the process group: call fabric.launch() first")


def reduce_op(name: str) -> Any:
    return {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN, "mean": dist.ReduceOp.SUM}[name]


def all_reduce(tensor: torch.Tensor, op: str) -> torch.Tensor:
    out = tensor.clone()
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return out
    if op == "mean" and not out.is_floating_point():
        out = out.double()
    dist.all_reduce(out, op=reduce_op(op))
    if op == "mean":
        out /= dist.get_world_size()
    return out
