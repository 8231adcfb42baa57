"""Seed every random number generator a training script touches."""

from __future__ import annotations

import os
import random


def seed_everything(seed: int | None = None, workers: bool = False) -> int:
    """Seed Python's ``random``, NumPy (when installed) and torch (CPU and all CUDA devices).

    :param seed: the seed; ``None`` reads ``WEFT_GLOBAL_SEED`` or uses 0.
    :param workers: also derive distinct seeds for DataLoader workers (sets
        ``WEFT_SEED_WORKERS=1`` for loaders set up by weft).
    :returns: the seed used.

    .. versionadded:: 0.1
    """
    import torch

    if seed is None:
        seed = int(os.environ.get("WEFT_GLOBAL_SEED", 0))
    from weft.errors import ConfigurationError

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigurationError(f"seed_everything() takes an int in [0, 2**32 - 1], got {seed!r}")
    if not (0 <= seed <= 2**32 - 1):
        raise ConfigurationError(f"seed must be in [0, 2**32 - 1], got {seed}")
    os.environ["WEFT_GLOBAL_SEED"] = str(seed)
    os.environ["WEFT_SEED_WORKERS"] = "1" if workers else "0"
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        pass
    else:
        numpy.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed
