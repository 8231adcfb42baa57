"""Train the seed loop under DDP on 2 CPU processes, once per precision given on the command line.

Run as ``python train_ddp.py 32-true bf16-mixed ...``: the first ``fabric.launch()`` starts the
workers (each re-runs this script); in a worker every later Fabric finds the processes and the
process group already there. Rank 0 prints one ``RESULT {json}`` line per precision.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from seed_loop import PRECISIONS, make_data, seed_loop  # noqa: E402
from torch import nn  # noqa: E402

from weft import Fabric  # noqa: E402


def overflow_on_one_rank(fabric, model, optimizer):
    """A non-finite loss on rank 1 only: every rank must skip the step and lower its scale alike."""
    x, y = make_data(64).tensors
    before = [p.detach().clone() for p in model.parameters()]
    scale = fabric.precision.loss_scale
    optimizer.zero_grad()
    loss = nn.CrossEntropyLoss()(model(x), y)
    fabric.backward(loss * float("inf") if fabric.global_rank == 1 else loss)
    optimizer.step()
    skipped = all(torch.equal(b, a) for b, a in zip(before, model.parameters()))
    return {"skipped": skipped, "scale_before": scale, "scale_after": fabric.precision.loss_scale}


def main(precisions):
    for precision in precisions:
        fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp", precision=precision)
        fabric.launch()
        model, optimizer, losses = seed_loop(fabric, epochs=5, max_norm=5.0)
        flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
        gathered = fabric.all_gather(flat)
        result = {
            "precision": fabric.precision_name,
            "world_size": fabric.world_size,
            "strategy": fabric.strategy_name,
            "losses": losses,
            "param_dtype": str(next(model.parameters()).dtype),
            "replicas_equal": bool(torch.equal(gathered[0], gathered[1])),
        }
        if precision == "16-mixed":
            result["scaler"] = type(fabric.precision.scaler).__name__
            result["overflow"] = overflow_on_one_rank(fabric, model, optimizer)
            result["overflow_all"] = fabric.all_gather(torch.tensor(result["overflow"]["scale_after"])).tolist()
        if fabric.is_global_zero:
            # One write per line: ranks share the pipe, and print() writes the text and its newline apart.
            sys.stdout.write("RESULT " + json.dumps(result) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:] or PRECISIONS)
