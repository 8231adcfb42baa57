"""FSDP on 2 processes: raw ``fully_shard`` vs weft's ``fsdp`` strategy, in the same processes,
taking turns; plus the bytes each rank holds for parameters, gradients and optimizer state,
against an even split of the unsharded total.

Started by the runner with ``torchrun --nproc-per-node 2 -m bench.workers.fsdp``.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.distributed as dist
from torch import nn

from bench.common import alternate, column, emit, median, spread, timed_both

STEPS_PER_REP = 10
CHECK_STEPS = 5
WIDTH = 512
LAYERS = 4


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers = []
    for _ in range(LAYERS):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 10))


def make_batches(rank: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(200 + rank)
    return [(torch.randn(32, WIDTH, generator=generator), torch.randint(0, 10, (32,), generator=generator)) for _ in range(count)]


def _local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this rank holds for parameters, their gradients and the optimizer's state."""
    params = list({id(p): p for p in model.parameters()}.values())
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    return {
        "params": sum(_local_bytes(p) for p in params),
        "grads": sum(_local_bytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(_local_bytes(t) for t in state),
    }


class Variant:
    def __init__(self, model, optimizer, backward) -> None:
        self.model, self.optimizer, self.backward = model, optimizer, backward

    def step(self, x, y) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.backward(loss)
        self.optimizer.step()
        return loss.detach()


def build_variants(base: nn.Module, fabric) -> dict[str, Variant]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    raw = copy.deepcopy(base)
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for layer in raw:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(raw, mesh=mesh)
    variants = {"torch": Variant(raw, torch.optim.AdamW(raw.parameters(), lr=1e-3), lambda loss: loss.backward())}
    model = copy.deepcopy(base)
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    variants["weft"] = Variant(model, optimizer, fabric.backward)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from weft import Fabric
    from weft_fsdp import FSDPStrategy

    # The same units as the raw variant: every Linear is sharded on its own, then the root.
    fabric = Fabric(accelerator="cpu", strategy=FSDPStrategy(auto_wrap_policy={nn.Linear}), devices=2)
    fabric.launch()
    rank, world = dist.get_rank(), dist.get_world_size()

    base = make_model()
    check = build_variants(base, fabric)
    batches = make_batches(rank, CHECK_STEPS)
    losses = {name: [v.step(x, y).item() for x, y in batches] for name, v in check.items()}
    max_diff = {name: max(abs(a - b) for a, b in zip(values, losses["torch"])) for name, values in losses.items()}
    memory = {name: held_bytes(v.model, getattr(v.optimizer, "optimizer", v.optimizer)) for name, v in check.items()}
    # Unsharded reference: every parameter once, its gradient, and AdamW's two moments (+ step counters).
    n_params = sum(p.numel() for p in base.parameters())
    n_tensors = len(list(base.parameters()))
    total = {"params": 4 * n_params, "grads": 4 * n_params, "optimizer": 8 * n_params + 4 * n_tensors}
    del check

    variants = build_variants(base, fabric)
    batches = make_batches(rank, STEPS_PER_REP)

    def runner(variant: Variant):
        def run() -> float:
            dist.barrier()
            return tuple(t / STEPS_PER_REP for t in timed_both(lambda: [variant.step(x, y) for x, y in batches]))

        return run

    samples = alternate({name: runner(v) for name, v in variants.items()}, reps=args.reps, warmup=2)
    gathered = [None] * world
    dist.all_gather_object(gathered, memory)
    if rank == 0:
        emit(
            {
                "per_step_s": {name: median(values) for name, values in column(samples, 0).items()},
                "cpu_per_step_s": {name: median(values) for name, values in column(samples, 1).items()},
                "spread": {name: spread(values) for name, values in column(samples, 0).items()},
                "cpu_spread": {name: spread(values) for name, values in column(samples, 1).items()},
                "loss_max_abs_diff": max_diff,
                "memory_per_rank": gathered,
                "memory_total": total,
                "world_size": world,
                "steps_per_rep": STEPS_PER_REP,
                "reps": args.reps,
            }
        )


if __name__ == "__main__":
    main()
