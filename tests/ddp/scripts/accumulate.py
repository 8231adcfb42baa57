"""Gradient accumulation with no_backward_sync and global-norm clipping on 2 processes.
Prints one JSON line from rank 0 with what each micro-step looked like across ranks."""

import json

import torch
from torch import nn

from weft import Fabric

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
fabric.seed_everything(3)
model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = fabric.setup(model, optimizer)
torch.manual_seed(100 + fabric.global_rank)  # each rank its own data
MAX_NORM = 0.05


def flat_grads():
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


report = {"accumulating_grads_differ": [], "synced_grads_equal": [], "norms_before": [], "norms_after": []}
for step in range(4):
    accumulating = step % 2 == 0
    x, y = torch.randn(6, 5) * 3, torch.randn(6, 1) * 3
    with fabric.no_backward_sync(model, enabled=accumulating):
        fabric.backward(nn.functional.mse_loss(model(x), y))
    gathered = fabric.all_gather(flat_grads())
    same = bool(torch.equal(gathered[0], gathered[1]))
    if accumulating:
        report["accumulating_grads_differ"].append(not same)
        continue
    report["synced_grads_equal"].append(same)
    norm = fabric.clip_gradients(model, optimizer, max_norm=MAX_NORM)
    report["norms_before"].append(float(norm))
    after = torch.linalg.vector_norm(flat_grads()).item()
    report["norms_after"].append(max(fabric.all_gather(torch.tensor(after)).tolist()))
    optimizer.step()
    optimizer.zero_grad()
report["max_norm"] = MAX_NORM
if fabric.is_global_zero:
    print("REPORT " + json.dumps(report), flush=True)
