"""Two DDP ranks that call a weft collective with different arguments (``python collective_mismatch.py
CASE[,CASE...]``: the cases run in turn in one job).

Cases: ``gather_shape`` (rank 0 gathers (4, 3), rank 1 (2, 3): an uneven last batch),
``gather_dtype``, ``gather_sync_grads_shape``, ``reduce_shape``, ``reduce_dtype``, ``reduce_op``
(sum against max), ``broadcast_src``, ``different_ops`` (all_reduce against all_gather) and
``same`` and ``broadcast_ok`` (matching calls: must succeed). Each rank prints ``WEFT-TEST-PID rank=R pid=P`` at start,
``WEFT-TEST-ERROR rank=R case=C type=NAME: MESSAGE`` when the collective raises, ``WEFT-TEST-RESULT
rank=R case=C ...`` when it returns, and ``WEFT-TEST-SECONDS rank=R case=C S`` after either; the job
ends with the last error raised, if any.

``WEFT_TEST_BREAK=collective_check`` turns weft's same-call check off, to show what it prevents.
``WEFT_TEST_BENCH=N`` instead times N matching all_reduce calls of one float32 number with the
check on and off, and rank 0 prints ``WEFT-TEST-BENCH on_us=... off_us=...``.
"""

from __future__ import annotations

import os
import sys
import time

import torch

import weft.collectives
from weft import Fabric

if os.environ.get("WEFT_TEST_BREAK") == "collective_check":
    weft.collectives._check_same_call = lambda *args, **kwargs: None


def call(fabric: Fabric, case: str):
    one = fabric.global_rank == 1
    if case == "same":
        return fabric.all_gather(torch.full((4, 3), float(fabric.global_rank))).sum().item()
    if case == "broadcast_ok":  # the payload's size travels with the same-call check
        got = fabric.broadcast({"from": fabric.global_rank, "items": list(range(1000))}, src=1)
        return got["from"] * 1000 + len(got["items"])
    if case == "gather_shape":
        return fabric.all_gather(torch.ones(2 if one else 4, 3))
    if case == "gather_dtype":
        return fabric.all_gather(torch.ones(4, 3, dtype=torch.float64 if one else torch.float32))
    if case == "gather_sync_grads_shape":
        return fabric.all_gather(torch.ones(2 if one else 4, 3, requires_grad=True), sync_grads=True)
    if case == "reduce_shape":
        return fabric.all_reduce(torch.ones(2 if one else 4, 3))
    if case == "reduce_dtype":
        return fabric.all_reduce(torch.ones(4, 3, dtype=torch.int64 if one else torch.float32))
    if case == "reduce_op":
        return fabric.all_reduce(torch.ones(3), reduce_op="max" if one else "sum")
    if case == "broadcast_src":
        return fabric.broadcast({"rank": fabric.global_rank}, src=1 if one else 0)
    if case == "different_ops":
        return fabric.all_gather(torch.ones(3)) if one else fabric.all_reduce(torch.ones(3))
    raise SystemExit(f"unknown case {case!r}")


def bench(fabric: Fabric, calls: int) -> None:
    x = torch.ones(1)
    timings = {}
    for label, check in (("on", weft.collectives._check_same_call), ("off", lambda *a, **k: None)) * 2:
        weft.collectives._check_same_call = check
        fabric.barrier()
        start = time.perf_counter()
        for _ in range(calls):
            fabric.all_reduce(x)
        timings[label] = (time.perf_counter() - start) / calls * 1e6  # the second round counts
    if fabric.global_rank == 0:
        print(f"WEFT-TEST-BENCH on_us={timings['on']:.1f} off_us={timings['off']:.1f}", flush=True)


def main(cases: list[str]) -> None:
    """Run each case in turn; a mismatch raises on both ranks at once, so the next case starts in step."""
    fabric = Fabric(accelerator="cpu", strategy="ddp", devices=2)
    fabric.launch()
    print(f"WEFT-TEST-PID rank={fabric.global_rank} pid={os.getpid()}", flush=True)
    fabric.barrier("start")
    if os.environ.get("WEFT_TEST_BENCH"):
        bench(fabric, int(os.environ["WEFT_TEST_BENCH"]))
        return
    failed = None
    for case in cases:
        fabric.barrier(f"before {case}")
        started = time.perf_counter()
        try:
            result = call(fabric, case)
        except Exception as exc:
            message = str(exc).replace("\n", " ")
            print(f"WEFT-TEST-ERROR rank={fabric.global_rank} case={case} type={type(exc).__name__}: {message}", flush=True)
            failed = exc
        else:
            print(f"WEFT-TEST-RESULT rank={fabric.global_rank} case={case} {result!r}".replace("\n", " "), flush=True)
        print(f"WEFT-TEST-SECONDS rank={fabric.global_rank} case={case} {time.perf_counter() - started:.2f}", flush=True)
    if failed is not None:
        raise failed  # the job fails as a single failing case's would


if __name__ == "__main__":
    main(sys.argv[1].split(","))
