"""Broadcast picklable objects between 2 ranks and print what each rank received."""

import torch

from weft import Fabric

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
from_one = fabric.broadcast({"sender": fabric.global_rank, "payload": list(range(5))}, src=1)
nothing = fabric.broadcast(None if fabric.global_rank == 0 else "not sent", src=0)
big = fabric.broadcast(torch.arange(200_000) if fabric.global_rank == 0 else None)
print(f"rank {fabric.global_rank}: {from_one} {nothing} {int(big.sum())}", flush=True)
