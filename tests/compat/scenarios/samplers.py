"""Custom samplers under DDP: each rank gets its share of what the user's sampler yields."""

import torch
from torch.utils.data import DataLoader, SubsetRandomSampler, WeightedRandomSampler, BatchSampler, SequentialSampler

from compat import Recorder, api

fabric = api.Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
api.seed_everything(7)
rec = Recorder(fabric.global_rank)
data = torch.arange(40)


def seen(loader, epochs=2):
    return [[int(i) for batch in loader for i in batch] for _ in range(epochs)]


subset = DataLoader(data, batch_size=4, sampler=SubsetRandomSampler(list(range(0, 20))))
rec.put("subset_random", sorted(sum(seen(fabric.setup_dataloaders(subset)), [])))
weights = [1.0 if i % 2 == 0 else 0.0 for i in range(40)]
weighted = DataLoader(data, batch_size=4, sampler=WeightedRandomSampler(weights, num_samples=16))
rec.put("weighted_all_even", all(i % 2 == 0 for e in seen(fabric.setup_dataloaders(weighted)) for i in e))
rec.put("weighted_len", len(fabric.setup_dataloaders(DataLoader(data, batch_size=4, sampler=WeightedRandomSampler(weights, num_samples=16)))))
shuffled = fabric.setup_dataloaders(DataLoader(data, batch_size=5, shuffle=True))
rec.put("shuffled", seen(shuffled))
rec.write()
