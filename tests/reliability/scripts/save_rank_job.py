"""Two DDP ranks saving a checkpoint from some ranks (``python save_rank_job.py CASE[,CASE...] DIR``).

Cases: ``rank1_only`` (``if fabric.global_rank == 1: fabric.save(...)``: must raise on rank 1),
``rank0_only`` (``if fabric.is_global_zero: fabric.save(...)``), ``all_ranks`` (every rank saves
the same path three times, with a rank-0-only save of another file in between).
Several cases run in turn in one job, each in its own folder ``DIR/CASE`` (``rank1_only`` can only
come last: it raises). Each line a case prints carries ``case=CASE``: a write of a checkpoint file
prints ``WEFT-TEST-WRITE case=CASE rank=R file=NAME``; an error prints
``WEFT-TEST-ERROR case=CASE rank=R type=NAME: MESSAGE`` (then re-raises); the end of a case prints
``WEFT-TEST-DONE case=CASE rank=R save_ms=...`` (the longest fabric.save on that rank).

``WEFT_TEST_BREAK=save_rank`` turns off the check that rank 0 saves too.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

import weft.checkpoint
import weft.distributed
from weft import Fabric

if os.environ.get("WEFT_TEST_BREAK") == "save_rank":
    weft.distributed.match_rank_zero_call = lambda *args, **kwargs: None

_write = weft.checkpoint.atomic_torch_save
_case = "?"  # the case running now, for the lines it prints


def _reporting_write(obj, path, *args, **kwargs):
    print(f"WEFT-TEST-WRITE case={_case} rank={int(os.environ.get('RANK', -1))} file={os.path.basename(path)}", flush=True)
    return _write(obj, path, *args, **kwargs)


weft.checkpoint.atomic_torch_save = _reporting_write


def main(cases: str, directory: str) -> None:
    global _case
    fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
    fabric.launch()
    print(f"WEFT-TEST-PID rank={fabric.global_rank} pid={os.getpid()}", flush=True)
    for case in cases.split(","):
        _case = case
        folder = os.path.join(directory, case)
        os.makedirs(folder, exist_ok=True)
        run_case(fabric, case, folder)


def run_case(fabric, case: str, directory: str) -> None:
    torch.manual_seed(0)
    model = fabric.setup(nn.Linear(3, 2))
    state = {"model": model, "step": 7}
    path = os.path.join(directory, "x.ckpt")
    slowest = 0.0

    def save(target: str) -> None:
        nonlocal slowest
        start = time.perf_counter()
        fabric.save(target, state)
        slowest = max(slowest, time.perf_counter() - start)

    try:
        if case == "rank1_only":
            if fabric.global_rank == 1:
                save(path)
        elif case == "rank0_only":
            if fabric.is_global_zero:
                save(path)
        elif case == "all_ranks":
            for step in range(3):
                state["step"] = step
                save(path)
                if fabric.is_global_zero:
                    save(os.path.join(directory, "other.ckpt"))
        else:
            raise SystemExit(f"unknown case {case!r}")
    except Exception as exc:
        print(f"WEFT-TEST-ERROR case={case} rank={fabric.global_rank} type={type(exc).__name__}: {exc}", flush=True)
        raise
    fabric.barrier(f"saved {case}")
    if os.path.exists(path):  # what was written is what every rank holds
        loaded = fabric.load(path)
        same = all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
        print(f"WEFT-TEST-LOADED case={case} rank={fabric.global_rank} same={same} step={loaded['step']}", flush=True)
    print(f"WEFT-TEST-DONE case={case} rank={fabric.global_rank} save_ms={slowest * 1e3:.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
