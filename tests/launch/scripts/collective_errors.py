"""Collective failure modes on 2 processes (run with WEFT_COLLECTIVE_TIMEOUT=3):
mismatched calls in debug mode, then a rank that is late for a barrier."""

import time

import torch

from weft import Fabric
from weft import distributed as wdist
from weft.errors import CollectiveTimeoutError, MisuseError

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
rank = fabric.global_rank

wdist.set_debug(True)
try:
    if rank == 0:
        fabric.all_reduce(torch.zeros(3))
    else:
        fabric.all_reduce(torch.zeros(2, dtype=torch.int64))
    print(f"rank {rank}: NO MISMATCH ERROR", flush=True)
except MisuseError as exc:
    print(f"rank {rank}: MISMATCH {exc}", flush=True)
wdist.set_debug(False)

fabric.barrier("in step")  # both ranks are fine here
if rank == 1:
    time.sleep(8)  # late: rank 0 must give up on the next barrier and name rank 1
try:
    fabric.barrier("after sleep")
    print(f"rank {rank}: NO TIMEOUT", flush=True)
except CollectiveTimeoutError as exc:
    print(f"rank {rank}: TIMEOUT {exc}", flush=True)
