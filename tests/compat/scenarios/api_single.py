"""The Fabric API on one process: argument defaults, collectives, clipping, launch, misuse errors, file modes.

Every misuse is recorded with ``rec.error``: weft's error must be an instance of the builtin
exception class Lightning raises (ValueError, TypeError, RuntimeError), so a user's ``except``
clause written for Lightning keeps catching it.
"""

import os

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compat import OUT, Recorder, api

rec = Recorder(0)
F = api.Fabric


def tensor_facts(value):
    """What a collective returned: values, dtype, shape."""
    return {"value": value, "dtype": str(value.dtype), "shape": list(value.shape)}


# ---------------------------------------------------------------- constructor arguments
rec.error("init/precision_none", F, accelerator="cpu", devices=1, precision=None)
rec.error("init/accelerator_none", F, accelerator=None, devices=1)
rec.error("init/strategy_none", F, accelerator="cpu", strategy=None)
rec.error("init/devices_none", F, accelerator="cpu", devices=None)
rec.error("init/num_nodes_none", F, accelerator="cpu", num_nodes=None)
rec.error("init/num_nodes_zero", F, accelerator="cpu", num_nodes=0)
rec.error("init/plugin_not_a_plugin", F, accelerator="cpu", plugins=[object()])
rec.error("init/precision_unknown", F, accelerator="cpu", precision="33-true")
rec.error("init/accelerator_unknown", F, accelerator="cpuu")
rec.error("init/strategy_unknown", F, accelerator="cpu", strategy="horovod")
rec.error("init/strategy_object", F, strategy=api.SingleDeviceStrategy(device="cpu"))
rec.error("init/strategy_object_torch_device", F, strategy=api.SingleDeviceStrategy(device=torch.device("cpu")))
rec.put("init/strategy_object_device", str(F(strategy=api.SingleDeviceStrategy(device="cpu")).device))

# ---------------------------------------------------------------- launch
fabric = F(accelerator="cpu", devices=1)
rec.error("launch/not_callable", fabric.launch, 5)
rec.error("launch/no_argument", fabric.launch, lambda: 1)
rec.put("launch/function_result", fabric.launch(lambda f, x: (f.world_size, x), 7))
rec.error("launch/again_without_function", fabric.launch)

# ---------------------------------------------------------------- collectives on one process
t = torch.tensor([1.0, 2.0])
gathered = fabric.all_gather(t)
rec.put("all_gather/tensor", tensor_facts(gathered))
rec.put("all_gather/is_input", gathered is t)
rec.put("all_gather/nested", {k: tensor_facts(v) for k, v in fabric.all_gather({"a": t, "b": torch.tensor(3)}).items()})
rec.put("all_gather/number", tensor_facts(fabric.all_gather(3)))
for op in ("mean", "sum", "max", "min"):
    source = torch.tensor([3, 4])
    out = fabric.all_reduce(source, reduce_op=op)
    rec.put(f"all_reduce/int_{op}", {**tensor_facts(out), "is_input": out is source, "input_after": source})
f32 = torch.tensor([1.5, 2.5])
out = fabric.all_reduce(f32)
rec.put("all_reduce/float_mean", {**tensor_facts(out), "is_input": out is f32})
rec.put("all_reduce/int_number", tensor_facts(fabric.all_reduce(3)))
rec.put("all_reduce/float_number", tensor_facts(fabric.all_reduce(2.5, reduce_op="sum")))
rec.put("all_reduce/bool_number", tensor_facts(fabric.all_reduce(True, reduce_op="sum")))
rec.put("all_reduce/nested_numbers", {k: tensor_facts(v) for k, v in fabric.all_reduce({"n": 2, "x": [1.5]}, reduce_op="sum").items() if k == "n"})
rec.put("broadcast", fabric.broadcast({"k": 1}))

# ---------------------------------------------------------------- clipping
torch.manual_seed(0)
module = nn.Linear(3, 2)
model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
model(torch.ones(4, 3)).sum().backward()
rec.put("clip/norm", fabric.clip_gradients(model, optimizer, max_norm=0.5))
rec.put("clip/norm_raw_module", fabric.clip_gradients(module, optimizer, max_norm=0.5))
rec.error("clip/both", fabric.clip_gradients, model, optimizer, clip_val=1.0, max_norm=1.0)
rec.error("clip/neither", fabric.clip_gradients, model, optimizer)
module.weight.grad[0, 0] = float("inf")
rec.error("clip/inf_default", fabric.clip_gradients, model, optimizer, max_norm=1.0)
module.weight.grad[0, 0] = float("nan")
rec.error("clip/nan_default", fabric.clip_gradients, model, optimizer, max_norm=1.0)
optimizer.zero_grad()  # (weft has scaled the gradients by the non-finite norm by now; Lightning has not)
model(torch.ones(4, 3)).sum().backward()
module.weight.grad[0, 0] = float("inf")
rec.put("clip/inf_allowed", fabric.clip_gradients(model, optimizer, max_norm=1.0, error_if_nonfinite=False))
optimizer.zero_grad()

# ---------------------------------------------------------------- backward on a Fabric that set up no model
other = F(accelerator="cpu", devices=1)
rec.error("backward/no_model_set_up_here", other.backward, model(torch.ones(1, 3)).sum())
rec.put("backward/gradient_arrived", module.weight.grad is not None)

# ---------------------------------------------------------------- misuse: which builtin class
rec.error("misuse/setup_twice", fabric.setup, model)
rec.error("misuse/setup_module_twice", fabric.setup_module, model)
rec.error("misuse/setup_optimizer_twice", fabric.setup, nn.Linear(1, 1), optimizer)
rec.error("misuse/setup_optimizers_none", fabric.setup_optimizers)
rec.error("misuse/setup_optimizers_twice", fabric.setup_optimizers, optimizer)
rec.error("misuse/setup_dataloaders_none", fabric.setup_dataloaders)
rec.error("misuse/setup_dataloaders_not_a_loader", fabric.setup_dataloaders, [1, 2])
loader = fabric.setup_dataloaders(DataLoader(TensorDataset(torch.zeros(4, 1))))
rec.error("misuse/setup_dataloaders_twice", fabric.setup_dataloaders, loader)
rec.error("misuse/no_backward_sync_raw_module", fabric.no_backward_sync, module)
rec.error("misuse/save_filter_not_a_dict", fabric.save, OUT / "f.ckpt", {"model": model}, filter=[1])
rec.error("misuse/save_filter_unknown_key", fabric.save, OUT / "f.ckpt", {"model": model}, filter={"nope": lambda k, v: True})
rec.error("misuse/save_filter_not_callable", fabric.save, OUT / "f.ckpt", {"model": model}, filter={"model": 1})

# ---------------------------------------------------------------- checkpoint file mode
# (Only the usual umask: Lightning's writer, fsspec, caches the umask it first sees, so a second
# umask in one process is not comparable. test_api.py checks weft follows a changed umask.)
os.umask(0o022)
fabric.save(OUT / f"{api.name}.ckpt", {"model": model})
rec.put("checkpoint/mode", oct(os.stat(OUT / f"{api.name}.ckpt").st_mode & 0o777))

# ---------------------------------------------------------------- DDP with one process adds the world dimension
ddp = F(accelerator="cpu", devices=1, strategy="ddp")
ddp.launch()
rec.put("ddp_world_1/all_gather", tensor_facts(ddp.all_gather(torch.tensor([1.0, 2.0]))))
source = torch.tensor([3, 4])
out = ddp.all_reduce(source)
rec.put("ddp_world_1/all_reduce_int_mean", {**tensor_facts(out), "is_input": out is source})
rec.write()
