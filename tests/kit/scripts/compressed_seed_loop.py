"""``python compressed_seed_loop.py STRATEGY``: Fabric(strategy=STRATEGY, devices=2) starts two processes.

First it proves that the averaged gradients travelled as 16-bit values (each reduced
element is exactly representable in the wire dtype, close to but not equal to the exact
float32 mean); then it trains the seed loop. Rank 0 prints one ``RESULT {json}`` line.
"""

import json
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from weft import Fabric

strategy = sys.argv[1]
wire = {"compressed_ddp": torch.bfloat16, "compressed_ddp_fp16": torch.float16}[strategy]

fabric = Fabric(strategy=strategy, devices=2, accelerator="cpu")
fabric.launch()
result = {}

# 1. One backward on a different batch per rank, against every rank's exact fp32 gradient.
torch.manual_seed(0)
probe, reference = nn.Linear(32, 8), nn.Linear(32, 8)
reference.load_state_dict(probe.state_dict())
probe = fabric.setup(probe)
batches = [torch.randn(16, 32, generator=torch.Generator().manual_seed(r)) for r in range(fabric.world_size)]
exact = []
for x in batches:
    reference.zero_grad()
    reference(x).pow(2).mean().backward()
    exact.append(reference.weight.grad.clone())
mean = torch.stack(exact).mean(0)
fabric.backward(probe(batches[fabric.global_rank]).pow(2).mean())
grad = probe.module.weight.grad
result["representable"] = bool(torch.equal(grad.to(wire).float(), grad))
result["exact_fp32"] = bool(torch.equal(grad, mean))
result["rel_error"] = float((grad - mean).norm() / mean.norm())
result["same_on_all_ranks"] = bool(fabric.all_reduce(grad, reduce_op="max").equal(fabric.all_reduce(grad, reduce_op="min")))

# 2. The seed loop: model, optimizer and data loader through Fabric, fabric.backward(loss).
fabric.seed_everything(42)
x = torch.randn(256, 16, generator=torch.Generator().manual_seed(1))
y = (x[:, :4].sum(dim=1) > 0).long()
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
model, optimizer = fabric.setup(model, optimizer)
loader = fabric.setup_dataloaders(DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
losses = []
for epoch in range(4):
    total = 0.0
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        fabric.backward(loss)
        optimizer.step()
        total += loss.item()
    losses.append(float(fabric.all_reduce(total / len(loader), reduce_op="mean")))
result["losses"] = losses
result["world_size"] = fabric.world_size
if fabric.is_global_zero:
    # One write per line: ranks share the pipe, and print() writes the text and its newline apart.
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
