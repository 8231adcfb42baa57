"""Breakages of data loading fidelity."""

from breakages import breakage


@breakage
def sampler_whole_dataset():
    """The old behaviour: any sampler is replaced by a DistributedSampler over the whole dataset."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    import weft.utilities.data as data

    def whole(loader, sampler_kwargs):
        sampler = DistributedSampler(loader.dataset, shuffle=isinstance(loader.sampler, RandomSampler), seed=0, **sampler_kwargs)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler)

    data.with_distributed_sampler = whole
