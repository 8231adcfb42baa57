"""Callbacks and loggers on 2 processes: callbacks run on every rank, the CSV is written by rank 0 alone."""

import csv

import torch

from compat import OUT, Recorder, api

ROOT = OUT / f"{api.name}-ddp-logs"
calls = []


class Callback:
    def on_step(self, rank, step):
        calls.append([rank, step])


logger = api.CSVLogger(ROOT, name="exp")
fabric = api.Fabric(accelerator="cpu", devices=2, strategy="ddp", callbacks=Callback(), loggers=logger)
fabric.launch()
rank = fabric.global_rank
rec = Recorder(rank)
for step in range(3):
    fabric.call("on_step", rank=rank, step=step)
    fabric.log_dict({"rank": rank, "value": torch.tensor(step + rank / 10)}, step=step)
fabric.barrier()
logger.finalize("success")  # rank 0 writes; elsewhere it does nothing
fabric.barrier()
rec.put("calls", calls)
rec.put("writer_created_here", logger._experiment is not None)
rec.put("version_folders", sorted(p.name for p in (ROOT / "exp").iterdir()))
with open(ROOT / "exp" / "version_0" / "metrics.csv", newline="") as file:
    rec.put("csv", [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)])
rec.write()
