"""``CollectiveHooks``: the strategy hooks that route Fabric's collectives through :mod:`weft.collectives`."""

from __future__ import annotations

from typing import Any

import torch

from weft.collectives import all_gather, all_reduce, barrier, broadcast_object
from weft.hookspecs import hookimpl


class CollectiveHooks:
    """Strategy hook implementations that route Fabric's collectives through this module.

    A strategy built on ``torch.distributed`` inherits them, and with them the bounded
    waits and the errors naming missing ranks::

        class MyStrategy(weft.distributed.CollectiveHooks):
            ...

    .. versionadded:: 0.1
    """

    @hookimpl
    def weft_strategy_all_reduce(self, fabric: Any, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        return all_reduce(tensor, reduce_op)

    @hookimpl
    def weft_strategy_all_gather(self, fabric: Any, tensor: torch.Tensor, sync_grads: bool) -> torch.Tensor:
        return all_gather(tensor, sync_grads=sync_grads)

    @hookimpl
    def weft_strategy_broadcast(self, fabric: Any, obj: Any, src: int) -> list[Any]:
        return [broadcast_object(obj, src)]

    @hookimpl
    def weft_strategy_barrier(self, fabric: Any, name: str | None) -> bool:
        barrier(name)
        return True
