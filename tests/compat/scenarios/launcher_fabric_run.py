"""A script written for Lightning's own launcher, started as
``fabric run --accelerator cpu --devices 2 --precision bf16-mixed launcher_fabric_run.py FRAMEWORK OUT``.

It passes no arguments to ``Fabric()`` and calls no ``launch()``: the launcher's flags (LT_*
variables) configure it. Explicit arguments that agree with the flags are fine; conflicting ones
are errors.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from compat import Recorder, api

fabric = api.Fabric()
rec = Recorder(fabric.global_rank)
rec.put("process_group_ready_after_init", dist.is_initialized())  # Fabric() sets the processes up at once
rec.put("ranks", [fabric.world_size, fabric.global_rank, fabric.local_rank, fabric.node_rank])
rec.put("device", str(fabric.device))
with fabric.autocast():
    rec.put("autocast_dtype", str((torch.ones(2, 2) @ torch.ones(2, 2)).dtype))
torch.manual_seed(0)
model = fabric.setup(nn.Linear(2, 2))
rec.put("param_dtype", str(next(model.parameters()).dtype))
rec.put("all_reduce_sum", fabric.all_reduce(torch.tensor(1.0), reduce_op="sum"))
loader = fabric.setup_dataloaders(DataLoader(list(range(8)), batch_size=2))
rec.put("shard", [int(i) for batch in loader for i in batch])
rec.error("launch", fabric.launch)  # the launcher made the processes: Lightning refuses launch() here

rec.error("explicit_same", api.Fabric, accelerator="cpu", devices=2, precision="bf16-mixed", num_nodes=1)
rec.error("explicit_defaults", api.Fabric, accelerator="auto", strategy="auto", devices="auto", precision=None)
rec.error("conflict_devices", api.Fabric, devices=3)
rec.error("conflict_precision", api.Fabric, precision="32-true")
rec.error("conflict_accelerator", api.Fabric, accelerator="cuda")
rec.error("conflict_num_nodes", api.Fabric, num_nodes=2)
rec.write()
