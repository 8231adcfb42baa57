"""Run functions, warnings and log messages on global rank 0 only.

Names, arguments and ``stacklevel`` meanings follow ``lightning.fabric.utilities.rank_zero``
so code written for it works unchanged. This module imports no torch.

``rank_zero_only.rank`` is the rank the decorator compares with 0. Until something assigns it
(a Fabric that knows its rank, or the user), it is read afresh at every call: the process
group's rank when one is up, else the variables launchers set (``RANK``, ``LOCAL_RANK``,
``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``, in Lightning's order), else 0. Reading it late rather
than once at import keeps it right in processes forked after this module was imported, whose
launcher sets those variables only in the child.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from functools import wraps
from typing import Any, Callable, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

# LOCAL_RANK before SLURM_PROCID: SLURM sets SLURM_PROCID even when it did not start the processes.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _get_rank() -> int | None:
    """This process's global rank as the launcher's variables give it; ``None`` when none is set."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"The environment variable {name}={value!r} is not an integer rank; fix or unset it") from None
    return None


def _process_group_rank() -> int | None:
    torch = sys.modules.get("torch")  # never import torch here: only ask when it is loaded already
    dist = getattr(torch, "distributed", None) if torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return None


class _RankZeroOnly:
    """The ``rank_zero_only`` decorator; an object so that ``rank`` can be read lazily (see the module)."""

    def __init__(self) -> None:
        self._rank: int | None = None

    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        found = _process_group_rank()
        if found is None:
            found = _get_rank()
        return 0 if found is None else found

    @rank.setter
    def rank(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"rank_zero_only.rank = {value!r}: set a global rank (an int >= 0), or None to read it from the environment")
        self._rank = value

    def __call__(self, fn: Callable[..., T], default: Any = None) -> Callable[..., Any]:
        """Wrap ``fn`` so it runs on global rank 0 only; elsewhere the call returns ``default``."""

        @wraps(fn)
        def wrapped_fn(*args: Any, **kwargs: Any) -> Any:
            if self.rank == 0:
                return fn(*args, **kwargs)
            return default

        return wrapped_fn

    def __repr__(self) -> str:
        return f"<rank_zero_only (rank {self.rank})>"


rank_zero_only = _RankZeroOnly()


# `stacklevel` counts frames as in Lightning, where a helper sits between these functions and
# `warnings`/`logging`; without that helper here, one frame fewer is passed on.
@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """``logging.debug`` on global rank 0 only."""
    log.debug(*args, stacklevel=stacklevel - 1, **kwargs)


@rank_zero_only
def rank_zero_info(*args: Any, stacklevel: int = 4, **kwargs: Any) -> None:
    """``logging.info`` on global rank 0 only."""
    log.info(*args, stacklevel=stacklevel - 1, **kwargs)


@rank_zero_only
def rank_zero_warn(message: str | Warning, stacklevel: int = 4, **kwargs: Any) -> None:
    """``warnings.warn`` on global rank 0 only."""
    warnings.warn(message, stacklevel=stacklevel - 1, **kwargs)


def rank_zero_deprecation(message: str | Warning, stacklevel: int = 5, **kwargs: Any) -> None:
    """A ``DeprecationWarning`` (or ``category``) on global rank 0 only."""
    kwargs.setdefault("category", DeprecationWarning)
    rank_zero_warn(message, stacklevel=stacklevel, **kwargs)
