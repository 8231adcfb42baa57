"""Two processes, strategy compressed_ddp: prove the averaged gradients travelled as 16-bit values.

Prints one JSON line from rank 0: whether every reduced gradient element is exactly
representable in the wire dtype, and its distance from the exact float32 mean.
"""

import json
import sys

import torch
from torch import nn

from weft import Fabric

strategy = sys.argv[1]
wire = {"compressed_ddp": torch.bfloat16, "compressed_ddp_fp16": torch.float16}[strategy]

fabric = Fabric(strategy=strategy, devices=2, accelerator="cpu")
fabric.launch()
torch.manual_seed(0)
model = nn.Linear(32, 8)
reference = nn.Linear(32, 8)
reference.load_state_dict(model.state_dict())
model = fabric.setup(model)

# Each rank differentiates a different batch; compute every rank's exact fp32 gradient locally too.
batches = [torch.randn(16, 32, generator=torch.Generator().manual_seed(r)) for r in range(fabric.world_size)]
exact = []
for x in batches:
    reference.zero_grad()
    reference(x).pow(2).mean().backward()
    exact.append(reference.weight.grad.clone())
mean = torch.stack(exact).mean(0)

fabric.backward(model(batches[fabric.global_rank]).pow(2).mean())
grad = model.module.weight.grad
result = {
    "representable": bool(torch.equal(grad.to(wire).float(), grad)),
    "exact_fp32": bool(torch.equal(grad, mean)),
    "rel_error": float((grad - mean).norm() / mean.norm()),
    "same_on_all_ranks": bool(fabric.all_reduce(grad, reduce_op="max").equal(fabric.all_reduce(grad, reduce_op="min"))),
}
if fabric.is_global_zero:
    print("RESULT " + json.dumps(result), flush=True)
