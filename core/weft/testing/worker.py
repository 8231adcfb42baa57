"""The training script the conformance kit runs, in real processes, the way users run theirs.

``python worker.py --phase train ...`` calls ``fabric.launch()``: the strategy
starts the other processes (or ``weft run``/torchrun did). Each rank writes what
it observed to ``<out>/<phase>-rank<R>.json`` after every section, so a hang or a
crash still leaves evidence of how far each rank got. The kit's tests compare
those observations with values they compute themselves.

Sections stop at the first failure, recording the exception together with the
hook implementation (and plugin) it was raised in. Which sections run depends on what
the strategy declares (:func:`weft.capabilities.strategy_capabilities`): a strategy
that syncs periodically gets the ``periodic`` section instead of the per-step
gradient sections, and the expected gradients of one that never syncs are its own.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import sys
import time
from typing import Any, Iterator

# Run as a script, this file's folder is sys.path[0]; its sibling modules are not top-level modules.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import attrs  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from weft.testing.attribution import explain_exception  # noqa: E402

LR = 0.01
MOMENTUM = 0.9
SEED = 1234
TRAIN_EPOCHS = 12
INIT_SEED = 4321  # used by the init_module section only, before anything else draws from it
BARRIER_DELAY = 1.5  # seconds the last rank arrives late at the barrier


class SectionFailed(Exception):
    pass


class Report:
    """Observations of one rank, rewritten atomically after every section."""

    def __init__(self, out: str, phase: str, names: dict[str, str]) -> None:
        self.out, self.phase, self.names = out, phase, names
        self.rank = int(os.environ.get("RANK", 0))
        self.data: dict[str, Any] = {"phase": phase, "rank": self.rank, "sections": {}, "failure": None}

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"ok": False}
        self.data["sections"][name] = record
        try:
            yield record
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its hook
            self.data["failure"] = {"section": name, **explain_exception(exc, self.names)}
            self.write()
            sys.stderr.write(f"[weft kit] rank {self.rank}: section {name!r} failed:\n{self.data['failure']['traceback']}")
            sys.stderr.flush()
            raise SectionFailed(name) from exc
        record["ok"] = True
        self.write()

    def write(self) -> None:
        path = os.path.join(self.out, f"{self.phase}-rank{self.rank}.json")
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, path)


# ---------------------------------------------------------------------- model and data


def make_model(seed: int | None) -> nn.Module:
    """The kit's model; ``seed=None`` leaves the random state as the caller set it."""
    if seed is not None:
        torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def batch(step: int, rank: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch that differs per rank and per step, so a missing reduction shows."""
    g = torch.Generator().manual_seed(10_000 + 100 * step + rank)
    x = torch.randn(size, 4, generator=g)
    return x, target(x) + 0.5 * rank


def target(x: torch.Tensor) -> torch.Tensor:
    return x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


class IndexedRegression(torch.utils.data.Dataset):
    """64 samples of a linear target; each item also carries its index, to check the sampler."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(64, 4, generator=g)
        self.y = target(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[i], self.y[i], i


def full(t: torch.Tensor) -> torch.Tensor:
    """A plain float32 CPU copy of a tensor, gathering it first when it is sharded (DTensor)."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().float().cpu()


def flat_params(module: nn.Module) -> list[float]:
    return torch.cat([full(p).reshape(-1) for p in module.parameters()]).tolist()


def flat_grads(module: nn.Module) -> list[float] | None:
    """Gradients as one list, or ``None`` when they are not full local tensors (sharded strategies)."""
    parts = []
    for p in module.parameters():
        g = p.grad
        if g is None:
            return None
        if hasattr(g, "full_tensor"):
            g = g.full_tensor()
        if tuple(g.shape) != tuple(p.shape) and not hasattr(p, "full_tensor"):
            return None
        parts.append(g.detach().float().cpu().reshape(-1))
    return torch.cat(parts).tolist()


def momentum_buffers(optimizer: Any) -> list[float]:
    parts = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            buf = optimizer.state[p].get("momentum_buffer")
            if buf is not None:
                parts.append(full(buf).reshape(-1))
    return torch.cat(parts).tolist() if parts else []


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x).float(), y.float())


def local_grads(reference: nn.Module, step: int, world: int) -> list[torch.Tensor]:
    """Each rank's gradient on its own batch, computed on a plain copy of the model."""
    out = []
    for r in range(world):
        reference.zero_grad()
        x, y = batch(step, r)
        loss_of(reference, x, y).backward()
        out.append(torch.cat([p.grad.reshape(-1).clone() for p in reference.parameters()]))
    reference.zero_grad()
    return out


def load_flat(module: nn.Module, values: list[float]) -> None:
    flat = torch.tensor(values)
    offset = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


# ---------------------------------------------------------------------- phases


def make_fabric(args: argparse.Namespace) -> Any:
    from weft import Fabric

    strategy: Any = args.strategy
    options = json.loads(args.strategy_options) if args.strategy_options else {}
    if options:
        # Options go to the plugin's factory, as `weft run --strategy-option` passes them.
        from weft import registry

        strategy = registry.create("strategies", args.strategy, options)
    kwargs: dict[str, Any] = {"strategy": strategy, "precision": args.precision, "accelerator": args.accelerator}
    if not args.devices_from_launcher:
        kwargs["devices"] = args.devices
    return Fabric(**kwargs)


class Steps:
    """Counts the optimizer steps the worker takes, to find a periodic strategy's sync points."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer, self.count = optimizer, 0

    def step(self) -> None:
        self.optimizer.step()
        self.count += 1


def phase_train(args: argparse.Namespace, report: Report) -> None:
    from weft.capabilities import strategy_capabilities

    with report.section("launch") as rec:
        fabric = make_fabric(args)
        fabric.launch()
        report.rank = fabric.global_rank
        caps = strategy_capabilities(fabric.hook, who=f"strategy {args.strategy!r}")
        rec.update(
            rank=fabric.global_rank,
            world_size=fabric.world_size,
            device=str(fabric.device),
            strategy_name=fabric.strategy_name,
            process_group=_process_group_exists(),
            capabilities=attrs.asdict(caps),
        )
    world, rank = fabric.world_size, fabric.global_rank

    with report.section("all_reduce") as rec:
        source = torch.tensor([rank + 1.0, 2.0 * (rank + 1)], device=fabric.device)
        in_place = True
        for op in ("sum", "mean", "max", "min"):
            given = source.clone()
            result = fabric.all_reduce(given, reduce_op=op)
            in_place = in_place and result is given  # Lightning's semantics: the caller's tensor holds the result
            rec[op] = result.float().cpu().tolist()
        rec["in_place"] = in_place
        rec["python_number"] = float(fabric.all_reduce(float(rank), reduce_op="sum"))

    with report.section("all_gather") as rec:
        gathered = fabric.all_gather(torch.tensor([float(rank), 10.0 * rank]))
        rec["tensor"] = gathered.float().cpu().tolist()
        nested = fabric.all_gather({"a": torch.tensor(float(rank)), "b": [torch.ones(2) * rank]})
        rec["nested_a"] = nested["a"].float().cpu().tolist()
        rec["nested_b"] = nested["b"][0].float().cpu().tolist()

    with report.section("broadcast") as rec:
        rec["from_first"] = fabric.broadcast({"sender": rank, "payload": [1, 2, 3]}, src=0)
        rec["from_last"] = fabric.broadcast(f"rank-{rank}", src=world - 1)
        rec["none"] = fabric.broadcast(None if rank == 0 else "not-none", src=0)

    with report.section("barrier") as rec:
        # The last rank arrives late and leaves a marker just before it calls the barrier: every
        # other rank must find the marker once its barrier returns. A file, not a clock, decides.
        marker = os.path.join(args.out, "barrier-last-rank-arrived")
        if rank == world - 1 and world > 1:
            time.sleep(BARRIER_DELAY)
            with open(marker, "w"):
                pass
        started = time.monotonic()
        fabric.barrier("weft-kit")
        rec["waited"] = time.monotonic() - started
        rec["saw_last_rank"] = os.path.exists(marker)
        fabric.barrier()

    with report.section("init_module") as rec:
        # Built first, so that no seeded weights of INIT_SEED exist yet that torch.empty could reuse.
        torch.manual_seed(INIT_SEED)
        with fabric.init_module(empty_init=True):
            empty = make_model(None)
        rec["empty_on_meta"] = any(p.is_meta for p in empty.parameters())
        rec["empty_params"] = None if rec["empty_on_meta"] else flat_params(empty)
        torch.manual_seed(INIT_SEED)
        with fabric.init_module(empty_init=False):
            normal = make_model(None)
        rec["normal_params"] = flat_params(normal)
        rec["normal_dtype"] = str(next(normal.parameters()).dtype)
        rec["reference_params"] = flat_params(make_model(INIT_SEED))
        del empty, normal

    with report.section("setup") as rec:
        fabric.seed_everything(SEED)
        raw_model = make_model(SEED)
        raw_optimizer = torch.optim.SGD(raw_model.parameters(), lr=LR, momentum=MOMENTUM)
        model, optimizer = fabric.setup(raw_model, raw_optimizer)
        loader = fabric.setup_dataloaders(torch.utils.data.DataLoader(IndexedRegression(), batch_size=4, shuffle=False))
        steps = Steps(optimizer)
        rec["model_is_module"] = isinstance(model, nn.Module)
        rec["module_is_users"] = model.module is raw_model
        rec["optimizer_keeps_type"] = isinstance(optimizer, torch.optim.SGD)
        rec["device"] = str(fabric.device)
        rec["param_devices"] = sorted({str(_local(p).device) for p in model.module.parameters()})
        rec["param_dtypes"] = sorted({str(p.dtype) for p in model.module.parameters()})
        dtypes = fabric.hook.weft_precision_dtypes()
        rec["precision_param_dtype"] = None if dtypes is None else str(dtypes.param)
        rec["sampler_kwargs"] = repr(fabric.hook.weft_strategy_distributed_sampler_kwargs(fabric=fabric))
        indices, batch_devices = [], set()
        for x, y, idx in loader:
            indices += [int(i) for i in idx]
            batch_devices |= {str(x.device), str(y.device)}
        rec["sample_indices"] = indices
        rec["batch_devices"] = sorted(batch_devices)

    if caps.gradient_sync == "periodic":
        with report.section("periodic") as rec:
            # From identical replicas, sync_every steps on batches that differ per rank: the
            # parameters may differ in between, and must agree again after the last of them.
            rec["params_start"] = flat_params(model.module)
            rec["params_by_step"] = []
            for k in range(caps.sync_every or 1):
                optimizer.zero_grad()
                x, y = batch(100 + k, rank)
                fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
                steps.step()
                rec["params_by_step"].append(flat_params(model.module))
    else:
        _gradient_sections(fabric, report, model, optimizer, steps, world, rank, caps.gradient_sync == "every_step")

    with report.section("clipping") as rec:
        # Neither clip is followed by a step: they must not change the training trajectory.
        optimizer.zero_grad()
        x, y = batch(3, rank)
        fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
        before = flat_grads(model.module)
        rec["full_grads"] = before is not None
        if before is not None:
            clip_val = float(torch.tensor(before).abs().median())
            fabric.clip_gradients(model, optimizer, clip_val=clip_val)
            rec.update(clip_val=clip_val, value_before=before, value_after=flat_grads(model.module))
            optimizer.zero_grad()
            fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
            before = flat_grads(model.module)
            max_norm = 0.5 * float(torch.tensor(before).norm())
            returned = fabric.clip_gradients(model, optimizer, max_norm=max_norm)
            rec.update(max_norm=max_norm, norm_before=before, norm_after=flat_grads(model.module), returned_norm=float(returned))
        optimizer.zero_grad()

    with report.section("training") as rec:
        losses = []
        for epoch in range(TRAIN_EPOCHS):
            total = torch.zeros((), device=fabric.device)
            count = 0
            for x, y, _ in loader:
                optimizer.zero_grad()
                loss = loss_of(model, x, y)
                fabric.backward(loss, model=model)
                steps.step()
                total += loss.detach()
                count += 1
            losses.append(float(fabric.all_reduce(total / max(count, 1), reduce_op="mean")))
        if caps.gradient_sync == "periodic":
            # End on a sync point, where the replicas must agree (and the checkpoint holds them).
            x, y, _ = next(iter(loader))
            while steps.count % (caps.sync_every or 1):
                optimizer.zero_grad()
                fabric.backward(loss_of(model, x, y), model=model)
                steps.step()
        rec["steps"] = steps.count
        rec["epoch_losses"] = losses
        rec["params"] = flat_params(model.module)

    with report.section("checkpoint_save") as rec:
        path = os.path.join(args.out, "checkpoint")
        fabric.save(path, {"model": model, "optimizer": optimizer, "step": 11, "note": "kit", "extra": torch.arange(3)})
        fabric.barrier("after-save")
        rec["exists"] = os.path.exists(path)
        rec["params"] = flat_params(model.module)
        rec["momentum"] = momentum_buffers(optimizer)
        # Leftover temporary files would mean the write was not atomic (or not cleaned up).
        # Only names derived from the checkpoint's: the kit's own per-rank reports are written beside it.
        rec["leftovers"] = sorted(
            n for n in os.listdir(args.out) if n.startswith(".checkpoint") or (n.startswith("checkpoint") and n != "checkpoint")
        )


def _gradient_sections(fabric: Any, report: Report, model: Any, optimizer: Any, steps: Steps, world: int, rank: int, averaged: bool) -> None:
    """One step, then one accumulated step, each against a reference SGD. ``averaged``: the
    reference gradient is the mean of every rank's (gradient_sync="every_step"); otherwise this
    rank's own (gradient_sync="never")."""

    def expected(local: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(local).mean(0) if averaged else local[rank]

    with report.section("gradients") as rec:
        p0 = flat_params(model.module)
        reference = make_model(SEED)
        load_flat(reference, p0)
        ref_optimizer = torch.optim.SGD(reference.parameters(), lr=LR, momentum=MOMENTUM)
        local = local_grads(reference, 0, world)
        optimizer.zero_grad()
        x, y = batch(0, rank)
        fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
        rec["params_before"] = p0
        rec["grads"] = flat_grads(model.module)
        rec["local_grad"] = local[rank].tolist()
        rec["expected_grad"] = expected(local).tolist()
        steps.step()
        _reference_step(reference, ref_optimizer, expected(local))
        rec["params_after"] = flat_params(model.module)
        rec["reference_after"] = torch.cat([p.detach().reshape(-1) for p in reference.parameters()]).tolist()

    with report.section("no_backward_sync") as rec:
        load_flat(reference, flat_params(model.module))  # follow the strategy's own trajectory
        local_a = local_grads(reference, 1, world)
        local_b = local_grads(reference, 2, world)
        optimizer.zero_grad()
        with fabric.no_backward_sync(model, enabled=True):
            x, y = batch(1, rank)
            fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
        rec["grads_inside"] = flat_grads(model.module)
        rec["local_grad_inside"] = local_a[rank].tolist()
        with fabric.no_backward_sync(model, enabled=False):
            x, y = batch(2, rank)
            fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
        steps.step()
        _reference_step(reference, ref_optimizer, expected(local_a) + expected(local_b))
        rec["params_after"] = flat_params(model.module)
        rec["reference_after"] = torch.cat([p.detach().reshape(-1) for p in reference.parameters()]).tolist()


def phase_load(args: argparse.Namespace, report: Report) -> None:
    with report.section("launch") as rec:
        fabric = make_fabric(args)
        fabric.launch()
        report.rank = fabric.global_rank
        rec.update(rank=fabric.global_rank, world_size=fabric.world_size)

    with report.section("checkpoint_load") as rec:
        fabric.seed_everything(SEED + 1)
        raw_model = make_model(SEED + 99)  # different weights: the load must overwrite them
        model, optimizer = fabric.setup(raw_model, torch.optim.SGD(raw_model.parameters(), lr=LR, momentum=MOMENTUM))
        # The optimizer has no momentum yet: take one step so its state exists to be overwritten.
        x, y = batch(5, fabric.global_rank)
        fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
        optimizer.step()
        optimizer.zero_grad()
        rec["params_before"] = flat_params(model.module)
        state = {"model": model, "optimizer": optimizer, "step": 0, "note": ""}
        remainder = fabric.load(os.path.join(args.out, "checkpoint"), state)
        rec["params"] = flat_params(model.module)
        rec["momentum"] = momentum_buffers(optimizer)
        rec["step"] = state["step"]
        rec["note"] = state["note"]
        rec["remainder_keys"] = sorted(remainder)
        extra = remainder.get("extra")
        rec["extra"] = extra.tolist() if isinstance(extra, torch.Tensor) else repr(extra)
        fabric.backward(loss_of(model, fabric.to_device(x), fabric.to_device(y)), model=model)
        optimizer.step()
        rec["trains_after_load"] = all(bool(torch.isfinite(full(p)).all()) for p in model.module.parameters())


def _reference_step(reference: nn.Module, optimizer: torch.optim.Optimizer, flat_grad: torch.Tensor) -> None:
    offset = 0
    for p in reference.parameters():
        n = p.numel()
        p.grad = flat_grad[offset : offset + n].view_as(p).clone()
        offset += n
    optimizer.step()
    optimizer.zero_grad()


def _local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of a tensor (the local shard of a DTensor)."""
    return t.to_local() if hasattr(t, "to_local") else t


def _process_group_exists() -> bool:
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def _record_teardown(out: str) -> None:
    """Runs at exit, after weft's own teardown (exit handlers run last-registered first)."""
    rank = int(os.environ.get("RANK", 0))
    with open(os.path.join(out, f"teardown-rank{rank}.json"), "w") as f:
        json.dump({"process_group_after_exit": _process_group_exists()}, f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase", choices=("train", "load"), required=True)
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--devices-from-launcher", action="store_true", help="leave devices to `weft run`/torchrun")
    parser.add_argument("--strategy-options", default=None, help="JSON object: keyword arguments for the strategy's factory")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.phase == "train":
        # Registered before the Fabric exists, so it runs after the Fabric's own exit handler.
        atexit.register(_record_teardown, args.out)
    names = {"strategy": args.strategy, "precision": args.precision, "accelerator": args.accelerator}
    report = Report(args.out, args.phase, names)
    try:
        (phase_train if args.phase == "train" else phase_load)(args, report)
    except SectionFailed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
