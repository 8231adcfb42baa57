"""``move_data_to_device``: Lightning's public helper for moving a batch (or anything with ``.to``).

Unlike :func:`weft.utilities.apply.move_to_device`, which the data loader wrapper uses on
plain tensor batches every step, this walks every collection Lightning's does (mappings,
namedtuples, sequences, dataclasses) and moves any object with a callable ``.to``, not just
tensors.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

# Non-blocking copies to these are unsafe (CPU: the data may be read before it arrives; MPS:
# pytorch/pytorch#83015), as Lightning also holds.
_BLOCKING_DEVICE_TYPES = ("cpu", "mps")


def move_data_to_device(batch: Any, device: torch.device | str | int) -> Any:
    """``batch`` with every tensor, and every other object with a ``.to`` method, moved to
    ``device``; containers keep their types, anything else is returned as is."""
    if isinstance(device, str):
        device = torch.device(device)
    non_blocking = isinstance(device, torch.device) and device.type not in _BLOCKING_DEVICE_TYPES

    def move(data: Any) -> Any:
        if isinstance(data, torch.Tensor):
            return data.to(device, non_blocking=non_blocking)
        moved = data.to(device)
        # An object whose `.to` moves it in place and forgets to return itself is still moved.
        return data if moved is None else moved

    return _walk(batch, move)


def _walk(data: Any, move: Any) -> Any:
    if callable(getattr(data, "to", None)) and not isinstance(data, type):
        return move(data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        result = copy.copy(data)
        for field in dataclasses.fields(data):
            if field.init:
                # object.__setattr__ also reaches frozen dataclasses (their own __init__ does the same).
                object.__setattr__(result, field.name, _walk(getattr(data, field.name), move))
        return result
    if isinstance(data, Mapping):
        items = [(key, _walk(value, move)) for key, value in data.items()]
        if isinstance(data, defaultdict):
            return type(data)(data.default_factory, items)
        return type(data)(items)
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(_walk(value, move) for value in data))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return type(data)([_walk(value, move) for value in data])
    return data
