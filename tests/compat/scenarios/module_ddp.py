"""Methods other than forward on a model set up on 2 processes, each seeing its own data.

The step methods and marked methods must run through DDP's forward, or the gradients are not
averaged and the replicas drift apart: every rank's parameters after the steps are recorded
(Lightning's are the same on both ranks). Also: an unmarked method that runs the layers, attribute
writes, devices, a torch.compile'd model and ``setup(move_to_device=False)``.

    module_ddp.py FRAMEWORK OUT [STRATEGY]

STRATEGY (weft only; default ddp) runs weft with another strategy: ``fsdp``, whose reference is
Lightning's DDP (Lightning's FSDP needs a GPU; sharded or replicated, the averaged-gradient steps
are the same numbers).
"""

import sys

import torch
import torch.nn.functional as F

from compat import Recorder, api
from module_models import Net

strategy = sys.argv[3] if len(sys.argv) > 3 and api.name == "weft" else "ddp"
fabric = api.Fabric(accelerator="cpu", devices=2, strategy=strategy)
fabric.launch()
rank = fabric.global_rank
rec = Recorder(rank)


def batch(step):
    g = torch.Generator().manual_seed(100 * rank + step)  # each rank its own data
    return torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)


def full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor  # FSDP shards


def setup(module, **kwargs):
    return fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.2), **kwargs)


def new_net():
    torch.manual_seed(0)  # the same initial weights on every rank
    return Net()


def train(tag, model, optimizer, call, steps=2):
    losses = []
    for step in range(steps):
        loss = call(model, batch(step))
        fabric.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss)
    rec.put(f"{tag}/losses", losses)
    rec.put(f"{tag}/params", [full(v) for _, v in sorted(model.state_dict().items())])


# ---------------------------------------------------------------- step methods through DDP
net = new_net()
model, optimizer = setup(net)
train("training_step", model, optimizer, lambda m, b: m.training_step(b))
rec.error("unmarked/runs_layers", model.custom_step, batch(9))
rec.error("unmarked/without_layers", model.describe)
model.mark_forward_method("custom_step")
train("marked_name", model, optimizer, lambda m, b: m.custom_step(b))
model.mark_forward_method(net.other_step)
train("marked_bound", model, optimizer, lambda m, b: m.other_step(b))

# ---------------------------------------------------------------- attributes and devices
model.scale = 0.5
rec.put("attr/module_sees_write", net.scale)
rec.put("attr/output_after_write", model(batch(0)[0]))
rec.put("attr/devices", [str(model.device), str(fabric.strategy.root_device), str(model.dtype)])

# ---------------------------------------------------------------- torch.compile
compiled = torch.compile(new_net(), backend="eager")
cmodel, copt = setup(compiled)
rec.put("compile/keys", sorted(cmodel.state_dict()))
train("compile/forward", cmodel, copt, lambda m, b: F.mse_loss(m(b[0]), b[1]))
train("compile/training_step", cmodel, copt, lambda m, b: m.training_step(b))

# ---------------------------------------------------------------- move_to_device=False still syncs
net = new_net()
model, optimizer = setup(net, move_to_device=False)
train("not_moved", model, optimizer, lambda m, b: F.mse_loss(m(b[0]), b[1]))
rec.write()
