"""Gradient clipping for strategies whose every process holds whole gradients.

On one device, and under DDP after its all-reduce, the local gradients are the
global ones, so the local norm is the true norm. A strategy of that kind inherits
:class:`WholeGradientClipping`; a sharding strategy must compute the norm over all
shards itself.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import Any

import torch

from weft.hookspecs import hookimpl


def gradients_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The parameters of ``optimizer`` that have a gradient."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


class WholeGradientClipping:
    """The two clipping hooks, computed on this process's (whole) gradients."""

    @hookimpl
    def weft_strategy_clip_gradients_norm(
        self, fabric: Any, module: Any, optimizer: torch.optim.Optimizer, max_norm: float, norm_type: float
    ) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(gradients_of(optimizer), max_norm, norm_type=norm_type)

    @hookimpl
    def weft_strategy_clip_gradients_value(self, fabric: Any, module: Any, optimizer: torch.optim.Optimizer, clip_val: float) -> bool:
        torch.nn.utils.clip_grad_value_(gradients_of(optimizer), clip_val)
        return True
