"""Helpers for training scripts, under the names ``lightning.fabric.utilities`` gives them.

Importing this package imports nothing heavy: each name loads its module on first use, and
only some of those need torch (``rank_zero_*`` and ``AttributeDict`` do not).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY = {
    "rank_zero_only": "weft.utilities.rank_zero",
    "rank_zero_debug": "weft.utilities.rank_zero",
    "rank_zero_info": "weft.utilities.rank_zero",
    "rank_zero_warn": "weft.utilities.rank_zero",
    "rank_zero_deprecation": "weft.utilities.rank_zero",
    "AttributeDict": "weft.utilities.attribute_dict",
    "move_data_to_device": "weft.utilities.move",
    "is_wrapped": "weft.utilities.wrapped",
    "Throughput": "weft.utilities.throughput",
    "ThroughputMonitor": "weft.utilities.throughput",
    "measure_flops": "weft.utilities.throughput",
    "get_available_flops": "weft.utilities.flops",
    "SpikeDetection": "weft.utilities.spike",
    "TrainingSpikeException": "weft.utilities.spike",
    "seed_everything": "weft.utilities.seed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # Submodules (weft.utilities.data, ...) are found by the import system, not here.
        raise AttributeError(f"module 'weft.utilities' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from weft.utilities.attribute_dict import AttributeDict
    from weft.utilities.flops import get_available_flops
    from weft.utilities.move import move_data_to_device
    from weft.utilities.rank_zero import rank_zero_debug, rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn
    from weft.utilities.seed import seed_everything
    from weft.utilities.spike import SpikeDetection, TrainingSpikeException
    from weft.utilities.throughput import Throughput, ThroughputMonitor, measure_flops
    from weft.utilities.wrapped import is_wrapped
