"""Per-step time of a tiny MLP training loop in one process: raw torch vs weft (vs Lightning
Fabric / Accelerate when installed). Every variant runs the same model, data and optimizer;
they take turns, one epoch at a time."""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.common import alternate, anchor_installed, column, emit, median, spread, timed_both

BATCHES = 50
BATCH_SIZE = 64


def make_parts(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
    # Whole batches, served by a DataLoader with batch_size=None: the loader path (and any
    # framework wrapper around it) is on the clock, but not 64 per-sample fetches and a collate.
    data = [(torch.randn(BATCH_SIZE, 32), torch.randn(BATCH_SIZE, 1)) for _ in range(BATCHES)]
    return model, data


def loop(model, optimizer, loader, backward) -> None:
    """The loop every variant runs; only ``backward`` differs (``loss.backward`` or the framework's)."""
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        backward(loss)
        optimizer.step()


def raw_variant(base, data):
    model = copy.deepcopy(base)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(data, batch_size=None)
    return lambda: loop(model, optimizer, loader, lambda loss: loss.backward())


def weft_variant(base, data):
    from weft import Fabric

    fabric = Fabric(accelerator="cpu", devices=1)
    model = copy.deepcopy(base)
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    loader = fabric.setup_dataloaders(DataLoader(data, batch_size=None))
    return lambda: loop(model, optimizer, loader, fabric.backward)


def lightning_variant(base, data):
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=1)
    model = copy.deepcopy(base)
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    loader = fabric.setup_dataloaders(DataLoader(data, batch_size=None))
    return lambda: loop(model, optimizer, loader, fabric.backward)


def accelerate_variant(base, data):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = copy.deepcopy(base)
    model, optimizer, loader = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3), DataLoader(data, batch_size=None))
    return lambda: loop(model, optimizer, loader, accelerator.backward)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core each: less scheduler noise, and overhead is what we measure
    base, data = make_parts()
    builders = {"torch": raw_variant, "weft": weft_variant}
    for name, builder in (("lightning", lightning_variant), ("accelerate", accelerate_variant)):
        if anchor_installed(name):
            builders[name] = builder
    variants, errors = {}, {}
    for name, builder in builders.items():
        try:
            epoch = builder(base, data)
            variants[name] = lambda epoch=epoch: tuple(t / BATCHES for t in timed_both(epoch))
        except Exception as exc:  # noqa: BLE001 - an anchor that fails to set up is reported, not fatal
            if name in ("torch", "weft"):
                raise
            errors[name] = f"{type(exc).__name__}: {exc}"
    samples = alternate(variants, reps=args.reps, warmup=2)
    wall, cpu = column(samples, 0), column(samples, 1)
    emit(
        {
            "per_step_s": {name: median(values) for name, values in wall.items()},
            "cpu_per_step_s": {name: median(values) for name, values in cpu.items()},
            "spread": {name: spread(values) for name, values in wall.items()},
            "cpu_spread": {name: spread(values) for name, values in cpu.items()},
            "steps_per_rep": BATCHES,
            "reps": args.reps,
            "errors": errors,
        }
    )


if __name__ == "__main__":
    main()
