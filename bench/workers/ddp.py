"""DDP on 2 processes: raw ``DistributedDataParallel`` vs weft's ``ddp`` strategy (vs Lightning
Fabric when installed), in the same processes, taking turns. First a correctness check: from the
same initial weights and batches, every variant must produce the same losses.

Started by the runner with ``torchrun --nproc-per-node 2 -m bench.workers.ddp``.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bench.common import alternate, anchor_installed, column, emit, median, spread, timed_both

STEPS_PER_REP = 20
CHECK_STEPS = 10
REDUCES_PER_REP = 50


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def make_batches(rank: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data, as with a sampler
    return [(torch.randn(64, 128, generator=generator), torch.randint(0, 10, (64,), generator=generator)) for _ in range(count)]


class Variant:
    """One way of running the same DDP training step."""

    def __init__(self, model, optimizer, backward) -> None:
        self.model, self.optimizer, self.backward = model, optimizer, backward

    def step(self, x, y) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.backward(loss)
        self.optimizer.step()
        return loss.detach()


def build_variants(base: nn.Module, weft_fabric, lightning_fabric) -> dict[str, Variant]:
    variants = {}
    raw = DistributedDataParallel(copy.deepcopy(base))
    variants["torch"] = Variant(raw, torch.optim.SGD(raw.parameters(), lr=0.05, momentum=0.9), lambda loss: loss.backward())
    model = copy.deepcopy(base)
    model, optimizer = weft_fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    variants["weft"] = Variant(model, optimizer, weft_fabric.backward)
    if lightning_fabric is not None:
        model = copy.deepcopy(base)
        model, optimizer = lightning_fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        variants["lightning"] = Variant(model, optimizer, lightning_fabric.backward)
    return variants


def reducers(weft_fabric, lightning_fabric) -> dict:
    """Summing one loss value over the ranks, as a logging step does: torch, weft (which first
    checks that every rank makes the same call), Lightning Fabric."""
    value = torch.ones(())

    def raw() -> None:
        dist.all_reduce(value.clone())

    calls = {"torch": raw, "weft": lambda: weft_fabric.all_reduce(value, reduce_op="sum")}
    if lightning_fabric is not None:
        calls["lightning"] = lambda: lightning_fabric.all_reduce(value, reduce_op="sum")

    def timed(call):
        def run() -> tuple[float, float]:
            dist.barrier()
            return tuple(t / REDUCES_PER_REP for t in timed_both(lambda: [call() for _ in range(REDUCES_PER_REP)]))

        return run

    return {name: timed(call) for name, call in calls.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from weft import Fabric

    fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
    fabric.launch()  # under torchrun: joins the job and creates the process group
    rank = dist.get_rank()
    errors = {}
    lightning_fabric = None
    if anchor_installed("lightning"):
        try:
            from lightning.fabric import Fabric as LightningFabric

            lightning_fabric = LightningFabric(accelerator="cpu", strategy="ddp", devices=2)
            lightning_fabric.launch()  # reuses the process group that already exists
        except Exception as exc:  # noqa: BLE001 - an anchor that cannot run here is reported, not fatal
            errors["lightning"] = f"{type(exc).__name__}: {exc}"
            lightning_fabric = None

    base = make_model()
    # Correctness: same weights, same batches -> same losses, step for step.
    check = build_variants(base, fabric, lightning_fabric)
    batches = make_batches(rank, CHECK_STEPS)
    losses = {name: [variant.step(x, y).item() for x, y in batches] for name, variant in check.items()}
    max_diff = {name: max(abs(a - b) for a, b in zip(values, losses["torch"])) for name, values in losses.items()}
    identical = {name: values == losses["torch"] for name, values in losses.items()}

    variants = build_variants(base, fabric, lightning_fabric)
    batches = make_batches(rank, STEPS_PER_REP)

    def runner(variant: Variant):
        def run() -> float:
            dist.barrier()  # start together, so no variant pays for the other rank's lag
            return tuple(t / STEPS_PER_REP for t in timed_both(lambda: [variant.step(x, y) for x, y in batches]))

        return run

    samples = alternate({name: runner(v) for name, v in variants.items()}, reps=args.reps, warmup=2)
    reduce_samples = alternate(reducers(fabric, lightning_fabric), reps=args.reps, warmup=2)
    # Both ranks measured; report rank 0's medians (the ranks wait for each other every step anyway).
    if rank == 0:
        emit(
            {
                "per_step_s": {name: median(values) for name, values in column(samples, 0).items()},
                "cpu_per_step_s": {name: median(values) for name, values in column(samples, 1).items()},
                "spread": {name: spread(values) for name, values in column(samples, 0).items()},
                "cpu_spread": {name: spread(values) for name, values in column(samples, 1).items()},
                "all_reduce_s": {name: median(values) for name, values in column(reduce_samples, 0).items()},
                "loss_max_abs_diff": max_diff,
                "loss_identical": identical,
                "check_losses": {name: values[:3] for name, values in losses.items()},
                "steps_per_rep": STEPS_PER_REP,
                "reps": args.reps,
                "errors": errors,
            }
        )


if __name__ == "__main__":
    main()
