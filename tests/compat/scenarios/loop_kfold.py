"""A k-fold cross-validation loop in the style of Lightning's example: one model per fold, each fold's
loaders built from SubsetRandomSampler over its own indices, validation loss gathered across ranks.

Run with ``DEVICES`` processes (argument 3). Records the per-fold validation losses and parameter sums.
"""

import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

from compat import Recorder, api

devices = int(sys.argv[3])
fabric = api.Fabric(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto")
fabric.launch()
api.seed_everything(3)
rec = Recorder(fabric.global_rank)

inputs = torch.randn(96, 10)
labels = (inputs[:, :3].sum(1) > 0).long()
dataset = TensorDataset(inputs, labels)
folds = [list(range(i, 96, 3)) for i in range(3)]

models, optimizers = [], []
for _ in folds:
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    model, optimizer = fabric.setup(model, optimizer)
    models.append(model)
    optimizers.append(optimizer)

for epoch in range(2):
    for fold, val_ids in enumerate(folds):
        train_ids = [i for i in range(96) if i not in set(val_ids)]
        train = DataLoader(dataset, batch_size=8, sampler=SubsetRandomSampler(train_ids))
        val = DataLoader(dataset, batch_size=8, sampler=SubsetRandomSampler(val_ids))
        train, val = fabric.setup_dataloaders(train, val)
        model, optimizer = models[fold], optimizers[fold]
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            fabric.backward(loss)
            optimizer.step()
        model.eval()
        total, seen = 0.0, 0
        with torch.no_grad():
            for x, y in val:
                total += F.cross_entropy(model(x), y, reduction="sum").item()
                seen += len(y)
        gathered = fabric.all_gather(total).sum() / fabric.all_gather(seen).sum()
        rec.put(f"epoch{epoch}/fold{fold}/val_loss", gathered)
        rec.put(f"epoch{epoch}/fold{fold}/param_sum", sum(p.detach().sum() for p in model.parameters()))
rec.write()
