"""Whether this process is the one that writes logs (global rank 0)."""

from __future__ import annotations

import os


def is_global_zero() -> bool:
    """Rank 0 of the process group; before there is one, the launcher's ``RANK`` (torchrun, ``weft run``).

    Fabric calls logger hooks on rank 0 only, but users also call a logger directly from
    every rank (as Lightning allows); the other ranks must not create a second run folder.
    """
    from weft import distributed

    if distributed.is_initialized():
        return distributed.get_rank() == 0
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True  # not a launcher's value; one process
