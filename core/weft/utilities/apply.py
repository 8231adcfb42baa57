"""Walk nested batches (tuples, lists, dicts, dataclass-free namedtuples) and act on tensors."""

from __future__ import annotations

from typing import Any, Callable

import torch


def apply_to_tensors(data: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Return ``data`` with ``fn`` applied to every tensor inside it, keeping container types."""
    if isinstance(data, torch.Tensor):
        return fn(data)
    if isinstance(data, dict):
        converted = {k: apply_to_tensors(v, fn) for k, v in data.items()}
        return converted if type(data) is dict else type(data)(converted)
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(apply_to_tensors(v, fn) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(apply_to_tensors(v, fn) for v in data)
    return data


def move_to_device(data: Any, device: torch.device) -> Any:
    """Move every tensor in ``data`` to ``device`` (non-blocking where it is safe)."""
    non_blocking = device.type == "cuda"
    return apply_to_tensors(data, lambda t: t.to(device, non_blocking=non_blocking))


def convert_floating(data: Any, dtype: torch.dtype) -> Any:
    """Cast floating-point tensors in ``data`` to ``dtype``; integer tensors are left alone."""
    return apply_to_tensors(data, lambda t: t.to(dtype) if torch.is_floating_point(t) else t)
