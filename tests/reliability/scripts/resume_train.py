"""Train a tiny model for a number of steps, optionally saving and stopping at step k, or resuming.

Used by test_exact_resume.py: an uninterrupted run and a saved-then-resumed run must end with
bitwise identical parameters. Every source of randomness a real run has is exercised: dropout
(torch), a data augmentation drawing from torch, NumPy and Python in the dataset, a per-step
factor from Python and NumPy, a shuffled sampler, and different generator states per rank.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import weft
from weft import Fabric


class NoisyDataset(Dataset):
    """Fixed data plus augmentation noise drawn from all three generators at fetch time."""

    def __init__(self, size: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(size, 8, generator=g)
        self.y = torch.randn(size, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        noise = 0.01 * torch.randn(8) + 0.001 * float(np.random.rand()) + 0.001 * random.random()
        return self.x[i] + noise, self.y[i]


def full(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter's whole value, also when a sharding strategy holds only a slice of it."""
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().cpu().clone()


def _break_loader_state(loader, world_size: int) -> None:
    """The deliberately broken variant: every rank resumes from rank 0's loader entry, as when only
    the writer's loader state was saved (the test must catch this)."""
    restore = loader.load_state_dict

    def rank0_only(entry):
        if "rank_generators" in entry:
            entry = {**entry, "rank_generators": [entry["generators"]] * world_size}
        restore(entry)

    object.__setattr__(loader, "load_state_dict", rank0_only)  # the wrapper forwards plain setattr to the loader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="single_device")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--save-at", type=int, default=None, help="save at this step, then exit")
    parser.add_argument("--keep-going", action="store_true", help="after --save-at, train on to --steps")
    parser.add_argument("--resume", default=None, help="checkpoint to resume from")
    parser.add_argument("--ckpt", default=None, help="where --save-at writes")
    parser.add_argument("--out", required=True, help="file receiving the final parameters")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--skip-rng", action="store_true", help="leave the RNG entry out (a control that must differ)")
    parser.add_argument(
        "--rank0-save", action="store_true",
        help="save under `if fabric.is_global_zero:` (without the RNG entry, whose gather needs every rank)",
    )
    args = parser.parse_args()

    fabric = Fabric(accelerator="cpu", strategy=args.strategy, devices=args.devices)
    fabric.launch()
    fabric.seed_everything(42)
    with fabric.init_module():
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.7)
    model, optimizer = fabric.setup(model, optimizer)
    loader = fabric.setup_dataloaders(
        DataLoader(NoisyDataset(), batch_size=4, shuffle=True, num_workers=args.workers)
    )
    # Different generator states on every rank, so restoring rank 0's everywhere would show.
    rank_seed = 1000 + 17 * fabric.global_rank
    torch.manual_seed(rank_seed)
    random.seed(rank_seed)
    np.random.seed(rank_seed)

    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loader": loader, "step": 0}
    if not (args.skip_rng or args.rank0_save):
        state["rng"] = weft.RNGState()
    if os.environ.get("WEFT_TEST_BREAK") == "rank0-loader-state":
        _break_loader_state(loader, fabric.world_size)
    if args.resume:
        fabric.load(args.resume, state)
    step = state["step"]

    while step < args.steps:
        for x, y in loader:
            factor = 1.0 + 0.01 * random.random() + 0.01 * float(np.random.rand())
            loss = factor * nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            fabric.backward(loss)
            optimizer.step()
            scheduler.step()
            step += 1
            if step == args.save_at:
                state["step"] = step
                if fabric.is_global_zero or not args.rank0_save:
                    fabric.save(args.ckpt, state)
                if not args.keep_going:
                    return
            if step == args.steps:
                break

    params = {name: full(p) for name, p in model.named_parameters()}
    # Where each generator stands at the end: a resumed run must continue them exactly too.
    probe = torch.tensor([torch.rand(()).item(), random.random(), float(np.random.rand())], dtype=torch.float64)
    probes = fabric.all_gather(probe)
    if fabric.is_global_zero:
        torch.save({"params": params, "rng_probe": probes.cpu(), "step": step}, args.out)


if __name__ == "__main__":
    main()
    sys.exit(0)
