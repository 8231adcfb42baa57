"""The same seeded loop under weft DDP (`python differential.py weft OUT`, fabric.launch())
or raw torch DDP (`torchrun ... differential.py raw OUT`). Writes OUT/<mode>-rank<R>.json."""

import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

mode, out = sys.argv[1], sys.argv[2]
SEED, EPOCHS = 7, 2


def data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g))


def build():
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))


losses = []
if mode == "weft":
    from weft import Fabric

    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    fabric.seed_everything(SEED)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model, optimizer = fabric.setup(model, optimizer)
    loader = fabric.setup_dataloaders(DataLoader(data(), batch_size=4, shuffle=True))
    for epoch in range(EPOCHS):
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            fabric.backward(loss)
            optimizer.step()
            losses.append(loss.item())
    rank = fabric.global_rank
else:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = DistributedDataParallel(build())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    sampler = DistributedSampler(data(), shuffle=True, seed=SEED)
    loader = DataLoader(data(), batch_size=4, sampler=sampler)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    # Plain torch can abort at exit when a gloo thread drops the last gradient all-reduce during
    # interpreter shutdown; meet once more first, as weft.distributed.destroy_process_group does.
    work = dist.barrier(async_op=True)
    work.wait()
    time.sleep(0.05)
    del work
    dist.destroy_process_group()

os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"{mode}-rank{rank}.json"), "w") as f:
    json.dump([v.hex() for v in losses], f)
