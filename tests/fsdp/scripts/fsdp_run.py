"""FSDP scenarios run under torchrun (or plain python for one process); rank 0 writes a JSON report.

    fsdp_run.py train PRECISION OUT      the seed's FSDP example: sharding, loss, recompute, clipping
    fsdp_run.py diff STRATEGY OUT        10 fp32 steps under 'fsdp' or 'ddp' (losses only)
    fsdp_run.py save DIR OUT             train, then sharded + full saves, then a rank-0-only save
    fsdp_run.py load DIR OUT             restore DIR's checkpoints at this world size and compare
    fsdp_run.py misc - OUT               setup order errors, empty_init, no_backward_sync, sharding strategies
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny import TinyDecoder, loss_of  # noqa: E402

from weft import Fabric  # noqa: E402
from weft_fsdp import FSDPStrategy  # noqa: E402

WORLD = int(os.environ.get("WORLD_SIZE", os.environ.get("FSDP_TEST_DEVICES", "1")))


def seed_strategy(**kwargs):
    return FSDPStrategy(
        auto_wrap_policy={nn.TransformerDecoderLayer},
        activation_checkpointing_policy={nn.TransformerDecoderLayer},
        cpu_offload=False,
        **kwargs,
    )


def make_fabric(strategy, precision="32-true"):
    fabric = Fabric(accelerator="cpu", strategy=strategy, devices=WORLD, precision=precision)
    fabric.launch()
    return fabric


def write(fabric, out, report):
    if fabric.global_rank == 0:
        with open(out, "w") as f:
            json.dump(report, f)


def full_state(model):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(getattr(model, "module", model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def train_steps(fabric, model, optimizer, steps, start=0):
    losses = []
    for step in range(start, start + steps):
        loss = loss_of(model, step, fabric.global_rank, fabric.device)
        fabric.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(fabric.all_reduce(loss.detach(), reduce_op="mean")))
    return losses


def train(precision, out):
    fabric = make_fabric(seed_strategy(), precision)
    torch.manual_seed(0)
    model = TinyDecoder()
    total = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    local = sum(p.to_local().numel() for p in model.parameters())

    # Count forward calls inside each checkpointed layer: 2 per step when backward recomputes.
    calls = {i: 0 for i in range(len(model.layers))}
    seen_dtypes = set()

    def counter(index):
        def hook(module, args, output):
            calls[index] += 1
            seen_dtypes.add(str(module.weight.dtype))

        return hook

    handles = [layer.linear1.register_forward_hook(counter(i)) for i, layer in enumerate(model.layers)]
    loss = loss_of(model, 0, fabric.global_rank, fabric.device)
    after_forward = dict(calls)
    fabric.backward(loss)
    after_backward = dict(calls)
    for h in handles:
        h.remove()
    grad_dtypes = sorted({str(p.grad.dtype) for p in model.parameters()})
    optimizer.step()
    optimizer.zero_grad()
    losses = [float(fabric.all_reduce(loss.detach(), reduce_op="mean"))]
    losses += train_steps(fabric, model, optimizer, 9, start=1)  # 10 unclipped steps: comparable with DDP

    # The clipping norm must be the norm of the whole gradient, not of this rank's shard.
    fabric.backward(loss_of(model, 10, fabric.global_rank, fabric.device))
    reference = math.sqrt(sum(float(p.grad.full_tensor().double().pow(2).sum()) for p in model.parameters()))
    local_only = math.sqrt(sum(float(p.grad.to_local().double().pow(2).sum()) for p in model.parameters()))
    norm = float(fabric.clip_gradients(model, optimizer, max_norm=0.5 * reference))
    clipped = math.sqrt(sum(float(p.grad.full_tensor().double().pow(2).sum()) for p in model.parameters()))
    optimizer.step()
    optimizer.zero_grad()
    locals_ = fabric.all_gather(torch.tensor(local)).tolist()
    write(fabric, out, {
        "world": fabric.world_size, "total": total, "local": locals_, "losses": losses,
        "after_forward": after_forward, "after_backward": after_backward,
        "compute_dtypes": sorted(seen_dtypes), "grad_dtypes": grad_dtypes,
        "param_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "norm": norm, "reference_norm": reference, "local_norm": local_only, "clipped_norm": clipped,
    })


def diff(strategy, out):
    fabric = make_fabric(seed_strategy() if strategy == "fsdp" else strategy)
    torch.manual_seed(0)
    model = TinyDecoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    write(fabric, out, {"losses": train_steps(fabric, model, optimizer, 10)})


def save(folder, out):
    fabric = make_fabric(seed_strategy(timeout=5))
    torch.manual_seed(0)
    model = TinyDecoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    train_steps(fabric, model, optimizer, 3)
    state = {"model": model, "optimizer": optimizer, "step": 3, "notes": {"lr": 1e-2}}
    fabric.save(os.path.join(folder, "sharded"), state)
    fabric.strategy.state_dict_type = "full"
    fabric.save(os.path.join(folder, "full.pt"), state)
    fabric.strategy.state_dict_type = "sharded"
    # The seed's guard, wrong under a sharded strategy: rank 0 must fail, in bounded time.
    report = {"rank0_error": None, "rank0_seconds": None}
    if fabric.is_global_zero:
        start = time.monotonic()
        try:
            fabric.save(os.path.join(folder, "guarded"), state)
        except Exception as exc:  # noqa: BLE001 - the report says which error it was
            report["rank0_error"] = f"{type(exc).__name__}: {exc}"
        report["rank0_seconds"] = time.monotonic() - start
    report["guarded_exists"] = os.path.exists(os.path.join(folder, "guarded"))
    from weft import distributed

    distributed.barrier("done", timeout=120)  # rank 1 waits here for rank 0 to give up
    write(fabric, out, report)


def compare(a, b):
    """Largest absolute difference between two nested structures (inf on a structural mismatch)."""
    if isinstance(a, dict):
        if set(a) != set(b):
            return math.inf
        return max([compare(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return math.inf
        return max([compare(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, torch.Tensor):
        return float((a.double() - b.double()).abs().max()) if a.shape == b.shape else math.inf
    return 0.0 if a == b else math.inf


def load(folder, out):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    expected = torch.load(os.path.join(folder, "full.pt"), weights_only=True)
    fabric = make_fabric(seed_strategy())
    report = {"world": fabric.world_size}

    def fresh(seed):
        torch.manual_seed(seed)
        model = TinyDecoder()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return fabric.setup(model, optimizer)

    model, optimizer = fresh(123)
    report["before"] = compare(full_state(model), expected["model"])
    state = {"model": model, "optimizer": optimizer, "step": 0}
    rest = fabric.load(os.path.join(folder, "sharded"), state)
    report["sharded_model"] = compare(full_state(model), expected["model"])
    report["sharded_optimizer"] = compare(
        get_optimizer_state_dict(model.module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)),
        expected["optimizer"],
    )
    report["step"], report["rest"] = state["step"], sorted(rest)

    model, optimizer = fresh(456)
    fabric.load(os.path.join(folder, "full.pt"), {"model": model, "optimizer": optimizer})
    report["full_into_sharded"] = compare(full_state(model), expected["model"])
    # Training continues from the restored state.
    report["continued"] = train_steps(fabric, model, optimizer, 1, start=3)

    if fabric.world_size == 1:
        torch.manual_seed(789)
        plain = TinyDecoder()
        fabric.load(os.path.join(folder, "sharded"), {"model": plain}, strict=False)
        report["sharded_into_plain"] = compare(plain.state_dict(), expected["model"])
    for key in ("before", "sharded_model", "sharded_optimizer", "full_into_sharded", "sharded_into_plain"):
        if key in report and report[key] == math.inf:
            report[key] = "mismatch"
    write(fabric, out, report)


def misc(_, out):
    from weft.errors import MisuseError

    fabric = make_fabric(FSDPStrategy(auto_wrap_policy={nn.TransformerDecoderLayer}))
    rank = fabric.global_rank
    report = {}

    # Optimizers must be set up after their model, from the sharded parameters.
    torch.manual_seed(0)
    model = TinyDecoder()
    early = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        fabric.setup_optimizers(early)
    except MisuseError as exc:
        report["optimizer_first"] = str(exc)
    model = fabric.setup_module(model)
    try:
        fabric.setup_optimizers(early)
    except MisuseError as exc:
        report["stale_optimizer"] = str(exc)
    fabric.setup_optimizers(torch.optim.SGD(model.parameters(), lr=0.1))

    # empty_init: built on the meta device, then only the local shard is allocated.
    with fabric.init_module(empty_init=True):
        lazy = TinyDecoder()
    report["meta_before"] = all(p.is_meta for p in lazy.parameters())
    total = sum(p.numel() for p in lazy.parameters())
    lazy = fabric.setup_module(lazy)
    report["meta_after"] = any(p.is_meta or p.to_local().is_meta for p in lazy.parameters())
    report["lazy_local_fraction"] = sum(p.to_local().numel() for p in lazy.parameters()) / total
    report["lazy_finite"] = all(bool(torch.isfinite(p.to_local()).all()) for p in lazy.parameters())
    lazy_loss = loss_of(lazy, 0, rank, fabric.device)
    fabric.backward(lazy_loss)
    report["lazy_loss_finite"] = bool(torch.isfinite(lazy_loss))

    # no_backward_sync: the first micro-step reduces nothing; after the second, the gradient
    # equals that of both micro-batches' losses summed in one backward.
    def fresh():
        torch.manual_seed(1)
        return fabric.setup_module(TinyDecoder())

    accumulated = fresh()
    with fabric.no_backward_sync(accumulated):
        fabric.backward(loss_of(accumulated, 0, rank, fabric.device))
    report["grads_after_skipped_sync"] = sum(p.grad is not None for p in accumulated.parameters())
    fabric.backward(loss_of(accumulated, 1, rank, fabric.device))
    reference = fresh()
    fabric.backward(loss_of(reference, 0, rank, fabric.device) + loss_of(reference, 1, rank, fabric.device))
    report["accumulation_error"] = max(
        float((a.grad.full_tensor() - b.grad.full_tensor()).abs().max())
        for a, b in zip(accumulated.parameters(), reference.parameters())
    )

    # Every sharding strategy trains; the fraction of elements each rank holds shows the layout.
    for label, options in {
        "FULL_SHARD": {},
        "SHARD_GRAD_OP": {"sharding_strategy": "SHARD_GRAD_OP"},
        "NO_SHARD": {"sharding_strategy": "NO_SHARD"},
        "HYBRID_1x2": {"sharding_strategy": "HYBRID_SHARD", "device_mesh": (1, 2)},
        "HYBRID_2x1": {"sharding_strategy": "HYBRID_SHARD", "device_mesh": (2, 1)},
    }.items():
        strategy = FSDPStrategy(auto_wrap_policy={nn.TransformerDecoderLayer}, **options)
        torch.manual_seed(0)
        net = TinyDecoder()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        net, optimizer = strategy.weft_strategy_setup_module_and_optimizers(fabric, net, [optimizer])
        optimizer = optimizer[0]
        fraction = sum(p.to_local().numel() for p in net.parameters()) / sum(p.numel() for p in net.parameters())
        first = loss_of(net, 0, rank, fabric.device)
        first.backward()
        optimizer.step()
        second = loss_of(net, 0, rank, fabric.device)
        report[label] = {"fraction": fraction, "improved": bool(second < first)}
    write(fabric, out, report)


if __name__ == "__main__":
    mode, arg, out = sys.argv[1:4]
    {"train": train, "diff": diff, "save": save, "load": load, "misc": misc}[mode](arg, out)
