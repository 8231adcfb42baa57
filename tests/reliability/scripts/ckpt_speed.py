"""Cost of checksums: save and load times with and without them, for a state of ``--mb`` megabytes.

- single file: ``torch.save`` vs ``weft.checkpoint.atomic_torch_save`` (CRC-32 computed by torch
  while writing: nothing extra), and ``torch.load`` vs ``weft.checkpoint.load_file`` (which
  verifies every record first); plus the CRC-32 verification alone, in GB/s.
- sharded (DCP, one process): ``FileSystemWriter``/``FileSystemReader`` vs weft's checked
  writer (CRC per item after writing) and reader (verified before reading).
- ``check_restorable`` on the same state, in microseconds.

Prints one JSON line. Times are the best of ``--repeat`` runs, files in ``--dir`` (page cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings

import torch


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    import torch.distributed.checkpoint as dcp

    from weft.checkpoint import atomic_torch_save, checked_dcp_reader, checked_dcp_writer, load_file
    from weft.checksums import verify_torch_file
    from weft.restorable import check_restorable

    torch.manual_seed(0)
    per = 4 * 2**20  # 4 MiB tensors, like the layers of a mid-sized model
    state = {"model": {f"layer{i}.weight": torch.randn(per // 4) for i in range(args.mb // 4)}, "step": 7}
    folder = tempfile.mkdtemp(prefix="weft-speed-", dir=args.dir)
    single = os.path.join(folder, "single.pt")
    out: dict = {"mb": args.mb}
    try:
        out["torch_save_s"] = best(lambda: torch.save(state, single), args.repeat)
        out["weft_save_s"] = best(lambda: atomic_torch_save(state, single), args.repeat)
        out["torch_load_s"] = best(lambda: torch.load(single, weights_only=True), args.repeat)
        out["weft_load_s"] = best(lambda: load_file(single), args.repeat)
        verify = best(lambda: verify_torch_file(single), args.repeat)
        out["verify_s"] = verify
        out["verify_gb_per_s"] = os.path.getsize(single) / verify / 1e9

        plain, checked = os.path.join(folder, "plain"), os.path.join(folder, "checked")

        def dcp_save(path: str, writer) -> None:
            shutil.rmtree(path, ignore_errors=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dcp.save(state, checkpoint_id=path, storage_writer=writer(path), no_dist=True)

        def dcp_load(path: str, reader) -> None:
            target = {"model": {k: torch.empty_like(v) for k, v in state["model"].items()}, "step": 0}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dcp.load(target, checkpoint_id=path, storage_reader=reader(path), no_dist=True)

        out["dcp_save_s"] = best(lambda: dcp_save(plain, dcp.FileSystemWriter), args.repeat)
        out["dcp_checked_save_s"] = best(lambda: dcp_save(checked, checked_dcp_writer), args.repeat)
        out["dcp_load_s"] = best(lambda: dcp_load(plain, dcp.FileSystemReader), args.repeat)
        out["dcp_checked_load_s"] = best(lambda: dcp_load(checked, checked_dcp_reader), args.repeat)
        out["check_restorable_us"] = best(lambda: check_restorable(state), args.repeat) * 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out["save_ratio"] = out["weft_save_s"] / out["torch_save_s"]
    out["load_ratio"] = out["weft_load_s"] / out["torch_load_s"]
    out["dcp_save_ratio"] = out["dcp_checked_save_s"] / out["dcp_save_s"]
    out["dcp_load_ratio"] = out["dcp_checked_load_s"] / out["dcp_load_s"]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
