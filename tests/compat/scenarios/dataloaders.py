"""DataLoader subclasses and batch samplers under DDP.

A DataLoader subclass with its own constructor arguments and attributes is rebuilt around
each rank's sampler and keeps them; a custom BatchSampler is rebuilt around each rank's
sampler; a DistributedSampler the user put inside a BatchSampler reshuffles every epoch; and
what cannot be rebuilt is refused.
"""

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

from compat import Recorder, api, epochs

fabric = api.Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
api.seed_everything(5, verbose=False)
rec = Recorder(fabric.global_rank)
data = torch.arange(30)


def inner(loader):
    """The loader behind the framework's wrapper."""
    return loader._dataloader if api.name == "lightning" else loader.loader


class TaggedLoader(DataLoader):
    def __init__(self, dataset, tag, scale=1, **kwargs):
        super().__init__(dataset, **kwargs)
        self.tag = tag
        self.scale = scale
        self.vocab = {"pad": 0, "eos": 1}


original = TaggedLoader(data, "train", scale=3, batch_size=4, shuffle=True, drop_last=True)
tagged = fabric.setup_dataloaders(original)
rec.put("subclass/attributes", [getattr(tagged, name, "<missing>") for name in ("tag", "scale", "vocab", "batch_size", "drop_last")])
rec.put("subclass/class", [type(inner(tagged)).__name__, isinstance(inner(tagged), TaggedLoader), inner(tagged) is original])
rec.put("subclass/sampler", [type(inner(tagged).sampler).__name__, getattr(inner(tagged).sampler, "shuffle", None)])
rec.put("subclass/epochs", epochs(tagged))
rec.put("subclass/length", len(tagged))
untouched = TaggedLoader(data, "eval", batch_size=4)
kept = fabric.setup_dataloaders(untouched, use_distributed_sampler=False)
rec.put("subclass/not_rebuilt_without_distributed_sampler", [inner(kept) is untouched, kept.tag, len(kept)])


class SizeFirst(DataLoader):
    """Its required argument ``size`` is stored nowhere: it cannot be rebuilt."""

    def __init__(self, size, dataset):
        super().__init__(dataset, batch_size=size)


rec.error("subclass/unrebuildable", fabric.setup_dataloaders, SizeFirst(2, data))


class LabelledBatchSampler(BatchSampler):
    def __init__(self, sampler, batch_size, drop_last, label="pairs"):
        super().__init__(sampler, batch_size, drop_last)
        self.label = label


labelled = rec.error(
    "batch_sampler/setup", fabric.setup_dataloaders,
    DataLoader(data, batch_sampler=LabelledBatchSampler(SequentialSampler(data), 3, drop_last=False)),
)
if labelled is None:
    rec.put("batch_sampler/kept", None)
    rec.put("batch_sampler/epochs", None)
else:
    batches = labelled.batch_sampler
    rec.put("batch_sampler/kept", [type(batches).__name__, batches.label, batches.batch_size, type(batches.sampler).__name__, len(labelled)])
    rec.put("batch_sampler/epochs", epochs(labelled))


class Chunks:
    """Batches of consecutive indices, with no sampler inside to split between ranks."""

    def __iter__(self):
        return iter([list(range(i, i + 5)) for i in range(0, 30, 5)])

    def __len__(self):
        return 6


rec.error("batch_sampler/unshardable", fabric.setup_dataloaders, DataLoader(data, batch_sampler=Chunks()))

# The user splits the data themselves, with a DistributedSampler inside a BatchSampler:
# the loader's epoch must reach it so every epoch is a new shuffle.
own = DistributedSampler(data, num_replicas=2, rank=fabric.global_rank, shuffle=True, seed=3)
reshuffled = fabric.setup_dataloaders(DataLoader(data, batch_sampler=BatchSampler(own, 4, False)), use_distributed_sampler=False)
rec.put("distributed_in_batch_sampler/epochs", epochs(reshuffled, 3))
rec.put("distributed_in_batch_sampler/last_epoch", own.epoch)
rec.write()
