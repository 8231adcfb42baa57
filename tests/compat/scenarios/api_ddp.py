"""The Fabric API on two DDP processes: strategy objects built with Lightning's arguments, collectives
(shapes, in-place reduction, numbers), reduce_op spellings, and DDP over a sub-group."""

import datetime

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from compat import Recorder, api

F = api.Fabric
strategy = api.DDPStrategy(
    process_group_backend="gloo",
    timeout=datetime.timedelta(seconds=120),
    start_method="popen",
    find_unused_parameters=False,
    broadcast_buffers=False,  # a DistributedDataParallel argument, passed as a plain keyword
)
fabric = F(accelerator="cpu", devices=2, strategy=strategy)
fabric.launch()
rank = fabric.global_rank
rec = Recorder(rank)


def tensor_facts(value):
    return {"value": value, "dtype": str(value.dtype), "shape": list(value.shape)}


def attempt(key, function, *args, **kwargs):
    """Record what a call returned, or what it raised (so a broken weft shows a difference, not a crash)."""
    out = rec.error(f"{key}/raised", function, *args, **kwargs)
    rec.put(key, None if out is None else tensor_facts(out))


# ---------------------------------------------------------------- DDP arguments reach DistributedDataParallel
torch.manual_seed(0)
norm = fabric.setup(nn.BatchNorm1d(2))
for _ in range(2):  # with broadcast_buffers (DDP's default) the second forward would start from rank 0's statistics
    norm(torch.full((4, 2), 10.0 * rank) + torch.arange(4.0).unsqueeze(1))
rec.put("ddp_kwargs/running_mean_not_broadcast", norm.running_mean)


def setup_with(**options):
    other = F(accelerator="cpu", devices=2, strategy=api.DDPStrategy(**options))
    other.launch()
    return other.setup(nn.Linear(1, 1))


rec.error("ddp_kwargs/unknown", setup_with, bogus_option=1)  # Lightning: a TypeError from DistributedDataParallel

# ---------------------------------------------------------------- collectives
rec.put("all_gather/tensor", tensor_facts(fabric.all_gather(torch.tensor([rank, 10 * rank]))))
rec.put("all_gather/number", tensor_facts(fabric.all_gather(rank)))
rec.put("all_gather/nested", {k: tensor_facts(v) for k, v in fabric.all_gather({"a": torch.tensor(float(rank)), "b": 2.5}).items()})
source = torch.tensor([3 + rank, 4, -3 - 2 * rank])  # int mean: [3.5, 4, -4] truncates into the int tensor
out = fabric.all_reduce(source)
rec.put("all_reduce/int_mean", {**tensor_facts(out), "is_input": out is source, "input_after": source})
floats = torch.tensor([1.0 + rank, 2.0])
out = fabric.all_reduce(floats, reduce_op="sum")
rec.put("all_reduce/float_sum", {**tensor_facts(out), "is_input": out is floats, "input_after": floats})
for op in ("max", "min", "avg", "SUM"):
    attempt(f"all_reduce/op_{op}", fabric.all_reduce, torch.tensor([1.0 + rank, 5.0 - rank]), reduce_op=op)
attempt("all_reduce/op_ReduceOp.SUM", fabric.all_reduce, torch.tensor([1.0 + rank]), reduce_op=dist.ReduceOp.SUM)
rec.put("all_reduce/number_int", tensor_facts(fabric.all_reduce(rank + 1, reduce_op="sum")))
rec.put("all_reduce/number_float", tensor_facts(fabric.all_reduce(rank + 0.5)))
rec.put("all_reduce/number_bool", tensor_facts(fabric.all_reduce(True, reduce_op="sum")))
rec.error("all_reduce/op_unknown", fabric.all_reduce, torch.tensor([1.0]), reduce_op="bogus")
rec.put("broadcast", fabric.broadcast({"from": rank}, src=1))

# ---------------------------------------------------------------- DDP over a sub-group: one group per rank
groups = [dist.new_group([0]), dist.new_group([1])]  # every rank creates every group, in the same order
alone = F(accelerator="cpu", devices=2, strategy=api.DDPStrategy(process_group=groups[rank]))
alone.launch()
torch.manual_seed(0)
linear = alone.setup(nn.Linear(2, 1, bias=False))
alone.backward(linear(torch.full((1, 2), float(rank + 1))).sum())
# Gradients are reduced within each rank's own group only: they stay this rank's own.
rec.put("process_group/gradient", linear.weight.grad)
loader = alone.setup_dataloaders(DataLoader(list(range(8)), batch_size=2))
rec.put("process_group/sampler_ranks", [int(i) for batch in loader for i in batch])  # the sampler spans the world
rec.write()
