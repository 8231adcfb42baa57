"""A two-rank DDP job that stays up until the test has listed its listening sockets.

``python net_job.py launch`` (``fabric.launch()``, the elastic launcher), ``python net_job.py
spawn`` (``ddp_spawn``: ``fabric.launch(fn)``) or ``weft run ... net_job.py run``. Each rank
prints ``WEFT-TEST-READY rank=R pid=P`` once the process group has carried a collective, then
waits (at most 60 s) for the file named by ``WEFT_TEST_RELEASE`` before finishing.

``WEFT_TEST_BREAK=loopback`` turns off weft's choice of the transport interface, so gloo
binds where torch would on its own: the address the hostname resolves to.
"""

from __future__ import annotations

import os
import sys
import time

import torch

import weft.process_group
from weft import Fabric

if os.environ.get("WEFT_TEST_BREAK") == "loopback":
    weft.process_group.choose_transport_interface = lambda *args, **kwargs: None


def work(fabric: Fabric) -> None:
    total = fabric.all_reduce(torch.ones(1), reduce_op="sum")
    assert total.item() == fabric.world_size, total
    print(f"WEFT-TEST-READY rank={fabric.global_rank} pid={os.getpid()} ifname={os.environ.get('GLOO_SOCKET_IFNAME')}", flush=True)
    release = os.environ["WEFT_TEST_RELEASE"]
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
    fabric.barrier("done")


def main(mode: str) -> None:
    if mode == "launch":
        fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
        fabric.launch()
        work(fabric)
    elif mode == "spawn":
        fabric = Fabric(accelerator="cpu", strategy="ddp_spawn", devices=2)
        fabric.launch(work)
    elif mode == "run":  # started by `weft run --accelerator cpu --strategy ddp --devices 2`
        fabric = Fabric()
        fabric.launch()
        work(fabric)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1])
