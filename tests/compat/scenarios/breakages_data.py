"""Breakages of data loading and seeding fidelity: each puts back one wrong behaviour."""

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


@breakage
def batch_sampler_epoch_missed():
    """Only ``loader.sampler`` is told the epoch: a DistributedSampler inside a BatchSampler repeats its order."""
    import weft.wrappers as wrappers

    def sampler_only(loader, epoch):
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    wrappers._set_sampler_epoch = sampler_only


@breakage
def loader_subclass_flattened():
    """The loader is rebuilt as a plain DataLoader: a subclass loses its class and attributes."""
    from torch.utils.data import DataLoader

    import weft.utilities.data as data

    rebuild = data.with_distributed_sampler

    def flattened(loader, sampler_kwargs):
        new = rebuild(loader, sampler_kwargs)
        if new is loader or type(new) is DataLoader:
            return new
        return DataLoader(new.dataset, batch_size=new.batch_size, sampler=new.sampler, drop_last=new.drop_last)

    data.with_distributed_sampler = flattened


@breakage
def custom_batch_sampler_refused():
    """The old behaviour: a loader with a batch sampler of the user's class is refused."""
    from torch.utils.data import BatchSampler

    import weft.utilities.data as data
    from weft.errors import MisuseError

    rebuild = data.with_distributed_sampler

    def refuse(loader, sampler_kwargs):
        if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
            raise MisuseError("weft cannot shard a custom batch_sampler; pass use_distributed_sampler=False")
        return rebuild(loader, sampler_kwargs)

    data.with_distributed_sampler = refuse


@breakage
def seed_workers_ignored():
    """The old behaviour: seed_everything(workers=True) gives loaders no worker_init_fn."""
    import weft.utilities.data as data

    data.add_worker_seeding = lambda loader, rank: None


@breakage
def user_worker_init_fn_replaced():
    """weft's worker seeding replaces a worker_init_fn the user set."""
    from functools import partial

    import weft.utilities.data as data
    from weft.utilities.seed import seed_worker, seed_workers_requested

    def replace(loader, rank):
        if seed_workers_requested():
            loader.worker_init_fn = partial(seed_worker, rank=rank)

    data.add_worker_seeding = replace


@breakage
def seed_not_reported():
    """seed_everything stays silent about the seed it set."""
    import weft.utilities.seed as seed

    seed._announce = lambda message: None


@breakage
def fabric_seed_workers_off():
    """Fabric.seed_everything defaults to workers=False (the function's default), not Lightning's True."""
    import weft
    from weft.utilities.seed import seed_everything

    def method(seed=None, workers=False, verbose=True):
        return seed_everything(seed, workers, verbose)

    weft.Fabric.seed_everything = staticmethod(method)
