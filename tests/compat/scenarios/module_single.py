"""The set-up model and optimizer on one process: attribute writes, marking methods, optimizers
with their own step/zero_grad signatures, and a torch.compile'd model (state_dict keys, training,
a checkpoint loaded into an uncompiled model)."""

import torch
import torch.nn.functional as F

from compat import OUT, Recorder, api
from module_models import Net, PlainSGD

fabric = api.Fabric(accelerator="cpu", devices=1)
fabric.launch()
rec = Recorder(fabric.global_rank)
g = torch.Generator().manual_seed(3)
x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)

# ---------------------------------------------------------------- attributes
torch.manual_seed(0)
net = Net()
model, optimizer = fabric.setup(net, torch.optim.AdamW(net.parameters(), lr=0.01))
model.scale = 2.0  # must reach the user's module: its forward reads it
rec.put("attr/module_sees_write", net.scale)
rec.put("attr/output_after_write", model(x))
model.note = "new"  # a name neither has: lands on the user's module
rec.put("attr/new_name_on_module", getattr(net, "note", None))
model.extra = torch.nn.Linear(8, 1)
rec.put("attr/new_submodule_on_module", "extra" in dict(net.named_children()))
model.eval()
rec.put("attr/eval", [model.training, net.training])
model.train()
rec.put("attr/describe", model.describe())
rec.put("attr/device", str(model.device))
rec.put("attr/dtype", str(model.dtype))
rec.put("attr/root_device", str(fabric.strategy.root_device))
rec.error("attr/set_dtype", setattr, model, "dtype", torch.float64)
rec.error("attr/set_device", setattr, model, "device", torch.device("cpu"))

# ---------------------------------------------------------------- methods (no wrapper: called directly)
loss = model.training_step((x, y))
fabric.backward(loss)
optimizer.step()
rec.put("methods/training_step_loss", loss)
rec.error("methods/unmarked_runs_layers", model.custom_step, (x, y))
rec.error("methods/mark_int", model.mark_forward_method, 42)
rec.error("methods/mark_forward", model.mark_forward_method, "forward")
rec.error("methods/mark_missing", model.mark_forward_method, "missing")
rec.error("methods/mark_non_method", model.mark_forward_method, "scale")
rec.error("methods/mark_name", model.mark_forward_method, "custom_step")
rec.error("methods/mark_bound", model.mark_forward_method, net.other_step)
rec.put("methods/marked_result", model.custom_step((x, y)))

# ---------------------------------------------------------------- optimizer signatures
optimizer.zero_grad(set_to_none=False)
rec.put("optimizer/zero_grad_kept_tensors", [p.grad is not None and not p.grad.any().item() for p in net.parameters()])
rec.put("optimizer/isinstance", [isinstance(optimizer, torch.optim.AdamW), isinstance(optimizer, torch.optim.Optimizer)])


def closure():
    optimizer.zero_grad()
    closure_loss = F.mse_loss(model(x), y)
    fabric.backward(closure_loss)
    return closure_loss


rec.put("optimizer/closure_loss", optimizer.step(closure))
rec.put("optimizer/closure_positional_loss", optimizer.step(closure=closure))
torch.manual_seed(0)
plain_net = Net()
plain_model, plain = fabric.setup(plain_net, PlainSGD(plain_net.parameters(), lr=0.1))
fabric.backward(F.mse_loss(plain_model(x), y))
rec.put("optimizer/own_step_result", rec.error("optimizer/own_step_without_closure", plain.step))
rec.put("optimizer/own_zero_grad_result", rec.error("optimizer/own_zero_grad_keyword", plain.zero_grad, set_to_none=False, scale=0.5))
rec.put("optimizer/own_zero_grad_scaled", [p.grad for p in plain_net.parameters()])
plain.zero_grad()
rec.put("optimizer/own_params", [p for p in plain_net.parameters()])

# ---------------------------------------------------------------- torch.compile
torch.manual_seed(0)
compiled = torch.compile(Net(), backend="eager")
cmodel, copt = fabric.setup(compiled, torch.optim.SGD(compiled.parameters(), lr=0.1))
rec.put("compile/keys", sorted(cmodel.state_dict()))
rec.put("compile/device", str(cmodel.device))
losses = []
for _ in range(2):
    step_loss = F.mse_loss(cmodel(x), y)
    fabric.backward(step_loss)
    copt.step()
    copt.zero_grad()
    losses.append(step_loss)
step_loss = cmodel.training_step((x, y))  # through the compiled forward
fabric.backward(step_loss)
copt.step()
copt.zero_grad()
losses.append(step_loss)
rec.put("compile/losses", losses)
rec.put("compile/params", [v for _, v in sorted(cmodel.state_dict().items())])
rec.error("compile/unmarked_runs_layers", cmodel.custom_step, (x, y))
rec.error("compile/unmarked_without_layers", cmodel.describe)
path = OUT / f"{api.name}-compiled.ckpt"
fabric.save(path, {"model": cmodel})
fresh = Net()
rec.error("compile/load_into_plain", fresh.load_state_dict, cmodel.state_dict())
rec.put("compile/plain_output", fresh(x))
fresh_model = fabric.setup(Net())
rec.error("compile/checkpoint_load", fabric.load, path, {"model": fresh_model})
rec.put("compile/checkpoint_output", fresh_model(x))
rec.write()
