"""The seed article's migration loop on 2 CPU processes, with hooks for the tests.

Usage: python train.py OUT_DIR [--defaults] [--epochs N] [--ckpt PATH] [--resume]
                               [--stop-after-epoch N] [--fail-rank R --fail-mode raise|kill]

Each rank writes OUT_DIR/rank<R>.json: its place in the job, the sample indices it
saw, its losses and a digest of its final parameters.
"""

import argparse
import hashlib
import json
import os
import signal
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from weft import Fabric

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--defaults", action="store_true", help="Fabric() with every argument left unset (weft run fills them)")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--ckpt")
parser.add_argument("--resume", action="store_true")
parser.add_argument("--stop-after-epoch", type=int)
parser.add_argument("--fail-rank", type=int)
parser.add_argument("--fail-mode", choices=["raise", "kill"])
args = parser.parse_args()

fabric = Fabric() if args.defaults else Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
fabric.seed_everything(1234)

data = torch.randn(64, 8)
targets = torch.randint(0, 4, (64,))
dataset = TensorDataset(data, targets, torch.arange(64))
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loader = DataLoader(dataset, batch_size=4, shuffle=True)

model, optimizer = fabric.setup(model, optimizer)
loader = fabric.setup_dataloaders(loader)

def digests():
    params = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    momenta = hashlib.sha256(
        b"".join(s["momentum_buffer"].numpy().tobytes() for s in optimizer.state_dict()["state"].values())
    ).hexdigest()
    return params, momenta


start_epoch, step, resumed = 0, 0, None
if args.resume:
    state = {"model": model, "optimizer": optimizer, "epoch": 0, "step": 0}
    fabric.load(args.ckpt, state)
    start_epoch, step = state["epoch"] + 1, state["step"]
    resumed = {"epoch": state["epoch"], "step": state["step"], "digests": digests()}

seen, losses = [], []
for epoch in range(start_epoch, args.epochs):
    epoch_seen = []
    for inputs, labels, index in loader:
        if args.fail_rank == fabric.global_rank and step == 3:
            if args.fail_mode == "raise":
                raise ValueError(f"injected failure on rank {fabric.global_rank}")
            os.kill(os.getpid(), signal.SIGKILL)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        fabric.backward(loss)
        optimizer.step()
        epoch_seen += index.tolist()
        losses.append(loss.item())
        step += 1
    seen.append(epoch_seen)
    if args.ckpt and not args.resume:
        # The seed's pattern: only rank 0 calls save, the others go on.
        if fabric.is_global_zero:
            fabric.save(args.ckpt, {"model": model, "optimizer": optimizer, "epoch": epoch, "step": step})
    if args.stop_after_epoch is not None and epoch == args.stop_after_epoch:
        break

mean_loss = fabric.all_reduce(torch.tensor(losses[-1] if losses else 0.0), reduce_op="mean")
digest, momenta = digests()
result = {
    "rank": fabric.global_rank,
    "local_rank": fabric.local_rank,
    "node_rank": fabric.node_rank,
    "world_size": fabric.world_size,
    "environment": fabric.environment_name,
    "strategy": fabric.strategy_name,
    "devices": fabric.num_devices,
    "num_nodes": fabric.num_nodes,
    "seen": seen,
    "losses": losses,
    "mean_last_loss": mean_loss.item(),
    "params": digest,
    "step": step,
    "optimizer_state": momenta,
    "resumed": resumed,
}
os.makedirs(args.out, exist_ok=True)
with open(os.path.join(args.out, f"rank{fabric.global_rank}.json"), "w") as f:
    json.dump(result, f)
print(f"rank {fabric.global_rank}/{fabric.world_size} done after step {step}", flush=True)
