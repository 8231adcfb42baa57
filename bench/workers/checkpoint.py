"""Checkpoint save/load throughput in one process: ``fabric.save``/``fabric.load`` vs plain
``torch.save``/``torch.load`` of the same model and optimizer state, taking turns.

weft writes atomically and durably (a temporary file, fsynced, then renamed into place);
plain ``torch.save`` writes in place without fsync, so a third variant, ``torch+fsync``, shows
how much of the difference is the durability itself. Both load with ``weights_only=True`` and restore into live objects.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn

from bench.common import alternate, emit, median, spread, timed


def make_state(width: int, layers: int):
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, width)).sum().backward()
    optimizer.step()  # creates the optimizer's state (two moments per parameter)
    return model, optimizer


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    tensors = list(model.state_dict().values())
    tensors += [t for s in optimizer.state_dict()["state"].values() for t in s.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    from weft import Fabric

    fabric = Fabric(accelerator="cpu", devices=1)
    model, optimizer = make_state(args.width, args.layers)
    size = state_bytes(model, optimizer)
    wmodel, woptimizer = fabric.setup(*make_state(args.width, args.layers))

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        plain_path, weft_path = os.path.join(folder, "plain.pt"), os.path.join(folder, "weft.ckpt")

        def plain_save() -> float:
            return timed(lambda: torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, plain_path))

        def plain_save_fsync() -> float:
            # The same write made durable, as weft's atomic save does: shows what durability costs.
            def save() -> None:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, plain_path)
                with open(plain_path, "rb+") as f:
                    os.fsync(f.fileno())

            return timed(save)

        def weft_save() -> float:
            return timed(lambda: fabric.save(weft_path, {"model": wmodel, "optimizer": woptimizer}))

        def plain_load() -> float:
            def load() -> None:
                saved = torch.load(plain_path, weights_only=True, map_location="cpu")
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])

            return timed(load)

        def weft_load() -> float:
            return timed(lambda: fabric.load(weft_path, {"model": wmodel, "optimizer": woptimizer}))

        saves = alternate({"torch": plain_save, "torch+fsync": plain_save_fsync, "weft": weft_save}, reps=args.reps, warmup=1)
        loads = alternate({"torch": plain_load, "weft": weft_load}, reps=args.reps, warmup=1)
        file_bytes = {"torch": os.path.getsize(plain_path), "weft": os.path.getsize(weft_path)}

    emit(
        {
            "state_bytes": size,
            "file_bytes": file_bytes,
            "save_s": {k: median(v) for k, v in saves.items()},
            "load_s": {k: median(v) for k, v in loads.items()},
            "save_MBps": {k: size / median(v) / 1e6 for k, v in saves.items()},
            "load_MBps": {k: size / median(v) / 1e6 for k, v in loads.items()},
            "spread": {"save": {k: spread(v) for k, v in saves.items()}, "load": {k: spread(v) for k, v in loads.items()}},
            "reps": args.reps,
        }
    )


if __name__ == "__main__":
    main()
