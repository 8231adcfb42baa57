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


def check_finite_norm(norm: torch.Tensor, norm_type: float) -> None:
    """Raise :class:`~weft.errors.NonFiniteNormError` when a total gradient norm is inf or NaN."""
    if not torch.isfinite(norm):
        from weft.errors import NonFiniteNormError

        raise NonFiniteNormError(
            f"The total norm of order {norm_type} of the gradients is {norm.item()}, so they cannot be "
            "clipped. Pass clip_gradients(..., error_if_nonfinite=False) to scale them by it anyway (with "
            "mixed precision, an overflow step: optimizer.step() then skips it)."
        )


class WholeGradientClipping:
    """The two clipping hooks, computed on this process's (whole) gradients."""

    @hookimpl
    def weft_strategy_clip_gradients_norm(
        self, fabric: Any, module: Any, optimizer: torch.optim.Optimizer, max_norm: float, norm_type: float,
        error_if_nonfinite: bool,
    ) -> torch.Tensor:
        params = gradients_of(optimizer)
        if not error_if_nonfinite or not hasattr(torch.nn.utils, "get_total_norm"):
            # (torch < 2.6 has no separate norm and clip: its own check raises before clipping.)
            return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite)
        # Check before clipping, so the gradients are left as they were when the norm is not finite.
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=norm_type)
        check_finite_norm(norm, norm_type)
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return norm

    @hookimpl
    def weft_strategy_clip_gradients_value(self, fabric: Any, module: Any, optimizer: torch.optim.Optimizer, clip_val: float) -> bool:
        torch.nn.utils.clip_grad_value_(gradients_of(optimizer), clip_val)
        return True
