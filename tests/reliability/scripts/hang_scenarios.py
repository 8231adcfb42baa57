"""Two DDP ranks where rank 1 misbehaves; every process must exit non-zero, soon, naming rank 1.

Scenarios: ``skip_barrier`` (rank 1 skips a barrier and goes on to the next collective),
``skip_all_reduce`` (rank 1 skips an all_reduce), ``raise`` (rank 1 raises), ``sigkill``
(rank 1 is killed with SIGKILL). Started the way users start scripts: ``python hang_scenarios.py
SCENARIO`` with ``fabric.launch()``.
"""

from __future__ import annotations

import os
import signal
import sys

import torch
from torch import nn

from weft import Fabric


def main(scenario: str) -> None:
    fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
    fabric.launch()
    print(f"WEFT-TEST-PID rank={fabric.global_rank} pid={os.getpid()}", flush=True)
    model, optimizer = fabric.setup(nn.Linear(4, 1), torch.optim.SGD([torch.zeros(1)], lr=0.1))
    for step in range(3):  # a few healthy steps first: the job is past initialisation
        loss = model(torch.randn(8, 4)).pow(2).mean()
        fabric.backward(loss)
        fabric.all_reduce(loss.detach())
    misbehaving = fabric.global_rank == 1
    if scenario == "skip_barrier":
        if not misbehaving:
            fabric.barrier("before-eval")
        fabric.all_reduce(torch.ones(1))
    elif scenario == "skip_all_reduce":
        if not misbehaving:
            fabric.all_reduce(torch.ones(1))
        fabric.barrier("end")
    elif scenario == "raise":
        if misbehaving:
            raise RuntimeError("simulated failure in the training step")
        fabric.all_reduce(torch.ones(1))
        fabric.barrier("end")
    elif scenario == "sigkill":
        if misbehaving:
            os.kill(os.getpid(), signal.SIGKILL)
        fabric.all_reduce(torch.ones(1))
        fabric.barrier("end")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(f"rank {fabric.global_rank} finished scenario {scenario} without an error", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
