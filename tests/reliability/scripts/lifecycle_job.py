"""A two-rank DDP job (CPU, gloo) for the process-lifecycle tests, started as users start scripts:
``python lifecycle_job.py MODE`` (``fabric.launch()``), ``weft run ... lifecycle_job.py MODE`` or
``torchrun --nproc-per-node 2 lifecycle_job.py MODE``.

Modes:

``exit3`` / ``exit0``
    After a few steps rank 1 calls ``sys.exit(3)`` / ``sys.exit(0)`` while rank 0 keeps training
    (so rank 0 waits for it in the next gradient all-reduce).
``train``
    Both ranks train (slowly) until stopped, up to two minutes: for the orphan and signal tests.
``finish``
    A few steps, then the script ends normally on both ranks.

Every rank prints ``WEFT-TEST-PID rank=R pid=P`` once set up and ``WEFT-TEST-READY rank=R`` after
its first step; rank 1 prints ``WEFT-TEST-EXIT t=<unix time>`` when it exits.

Broken variants, chosen by ``WEFT_TEST_BREAK`` (read only by this script):

``drain``
    ``weft.distributed.destroy_process_group`` is the old one: a gloo barrier "drain" at exit
    with no meeting through the store, then destroy (which joins gloo's threads).
``watchdog``
    The launcher watchdog never starts (only effective where the script starts it: torchrun).
``signals``
    The launcher loop of ``fabric.launch()`` is the old one, which lets SIGINT/SIGTERM escape.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

import weft.distributed
import weft.launch
import weft.launching.elastic
import weft.lifecycle
import weft.process_group
from weft import Fabric


def _old_destroy_process_group(drain_timeout: float = 10.0) -> None:
    """weft 0.2's teardown: a gloo barrier that a rank still training never joins, then destroy."""
    group, weft.process_group._group = weft.process_group._group, None
    if not dist.is_initialized():
        return
    if group is not None and group.world_size > 1 and not weft.process_group._uncaught_exception:
        try:
            work = dist.barrier(async_op=True)
            work.wait(datetime.timedelta(seconds=drain_timeout))
            del work
        except Exception:  # noqa: BLE001
            pass
    dist.destroy_process_group()


def _old_run_elastic(config, entrypoint, args):
    """weft 0.2's launcher loop: only a worker failure is handled; a signal escapes as a traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    from weft.errors import LaunchError

    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        raise LaunchError(weft.launch.describe_failures(exc.failures)) from None


BREAK = os.environ.get("WEFT_TEST_BREAK", "")
if BREAK == "drain":
    weft.distributed.destroy_process_group = _old_destroy_process_group
elif BREAK == "watchdog":
    weft.lifecycle.watch_launcher = lambda *args, **kwargs: False
elif BREAK == "signals":
    weft.launching.elastic.run_elastic = _old_run_elastic  # where launch_processes looks it up


def step(fabric: Fabric, model: nn.Module) -> None:
    fabric.backward(model(torch.randn(8, 4)).pow(2).mean())


def main(mode: str) -> None:
    fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
    fabric.launch()
    rank = fabric.global_rank
    print(f"WEFT-TEST-PID rank={rank} pid={os.getpid()}", flush=True)
    model = fabric.setup(nn.Linear(4, 1))
    step(fabric, model)
    print(f"WEFT-TEST-READY rank={rank}", flush=True)
    if mode == "train":
        deadline = time.monotonic() + 120  # a test that forgets the job must not leave it forever
        while time.monotonic() < deadline:
            step(fabric, model)
            time.sleep(0.05)
        return
    for _ in range(3):
        step(fabric, model)
        fabric.all_reduce(torch.ones(1))
    if mode in ("exit3", "exit0") and rank == 1:
        print(f"WEFT-TEST-EXIT t={time.time():.3f}", flush=True)
        sys.exit(int(mode[-1]))
    if mode == "finish":
        fabric.barrier("end")
        print(f"rank {rank} finished", flush=True)
        return
    for _ in range(3):
        step(fabric, model)
    print(f"rank {rank} trained on without rank 1", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
