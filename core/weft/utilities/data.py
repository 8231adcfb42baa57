"""Give a DataLoader a DistributedSampler while keeping everything else the user chose."""

from __future__ import annotations

import os
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler

from weft.errors import MisuseError

# DataLoader arguments carried over to the rebuilt loader.
_KEPT = (
    "num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn", "multiprocessing_context",
    "generator", "prefetch_factor", "persistent_workers", "pin_memory_device",
)


def with_distributed_sampler(loader: DataLoader, sampler_kwargs: dict[str, Any]) -> DataLoader:
    """A copy of ``loader`` whose sampler hands each rank its own share of the data.

    Shuffling follows the original loader (a ``RandomSampler`` means shuffle), and
    the shuffle seed is the one given to ``seed_everything`` so every rank agrees.
    """
    if isinstance(loader.dataset, IterableDataset) or isinstance(loader.sampler, DistributedSampler):
        return loader  # an iterable dataset shards itself; a distributed sampler is already there
    if type(loader.batch_sampler) is not BatchSampler:
        raise MisuseError(
            f"This DataLoader uses a custom batch_sampler ({type(loader.batch_sampler).__name__}) that weft cannot "
            "shard. Make it rank-aware yourself and pass use_distributed_sampler=False."
        )
    shuffle = isinstance(loader.sampler, RandomSampler)
    seed = int(os.environ.get("WEFT_GLOBAL_SEED", 0))
    sampler = DistributedSampler(loader.dataset, shuffle=shuffle, seed=seed, drop_last=False, **sampler_kwargs)
    kwargs = {name: getattr(loader, name) for name in _KEPT if hasattr(loader, name)}
    if kwargs.get("num_workers", 0) == 0:
        kwargs.pop("prefetch_factor", None)
        kwargs.pop("persistent_workers", None)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, **kwargs)
