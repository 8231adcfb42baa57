"""Custom samplers under DDP: each rank gets its share of what the user's sampler yields.

K-fold training with SubsetRandomSampler (each fold trains only on its own subset),
WeightedRandomSampler, a user's Sampler class (whose set_epoch must still be called), plain
shuffled/sequential loaders, and a sampler nobody can split (no len()).
"""

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, SubsetRandomSampler, WeightedRandomSampler

from compat import Recorder, api, epochs

fabric = api.Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
api.seed_everything(7, verbose=False)
rec = Recorder(fabric.global_rank)
data = torch.arange(40)


# K-fold cross-validation: fold k validates on every fourth sample from k and trains on the rest.
for fold in range(2):
    val_ids = list(range(fold, 40, 4))
    train_ids = [i for i in range(40) if i not in val_ids]
    train, val = fabric.setup_dataloaders(
        DataLoader(data, batch_size=4, sampler=SubsetRandomSampler(train_ids)),
        DataLoader(data, batch_size=4, sampler=SubsetRandomSampler(val_ids)),
    )
    seen_train, seen_val = epochs(train), epochs(val, 1)
    rec.put(f"kfold/{fold}/train", seen_train)
    rec.put(f"kfold/{fold}/val", seen_val)
    rec.put(f"kfold/{fold}/train_only_on_its_subset", all(i in train_ids for e in seen_train for b in e for i in b))
    rec.put(f"kfold/{fold}/lengths", [len(train), len(val)])

weights = [1.0 if i % 2 == 0 else 0.0 for i in range(40)]
weighted = fabric.setup_dataloaders(DataLoader(data, batch_size=4, sampler=WeightedRandomSampler(weights, num_samples=14)))
rec.put("weighted/epochs", epochs(weighted))
rec.put("weighted/length", len(weighted))


class Countdown(Sampler):
    """The first ``n`` indices from last to first; odd epochs take a stride of 7 instead."""

    def __init__(self, n):
        self.n, self.epoch, self.epochs_told = n, 0, []

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.epochs_told.append(epoch)

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -1) if self.epoch % 2 == 0 else [(7 * i) % self.n for i in range(self.n)])


countdown = Countdown(11)
custom = fabric.setup_dataloaders(DataLoader(data, batch_size=3, sampler=countdown))
rec.put("user_sampler/epochs", epochs(custom, 3))
rec.put("user_sampler/epochs_told", countdown.epochs_told)
rec.put("user_sampler/length", len(custom))

shuffled = fabric.setup_dataloaders(DataLoader(data, batch_size=5, shuffle=True))
rec.put("shuffled/epochs", epochs(shuffled))
own_generator = RandomSampler(data, generator=torch.Generator().manual_seed(3))
rec.put("shuffled_own_generator/epochs", epochs(fabric.setup_dataloaders(DataLoader(data, batch_size=5, sampler=own_generator))))
rec.put("sequential/epochs", epochs(fabric.setup_dataloaders(DataLoader(data, batch_size=6)), 1))


class Endless(Sampler):
    """Has no len(): its indices cannot be split evenly between ranks."""

    def __iter__(self):
        return iter(range(40))


rec.error("no_len/setup", fabric.setup_dataloaders, DataLoader(data, batch_size=4, sampler=Endless()))
rec.write()
