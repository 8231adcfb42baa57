"""Kill a process that saves checkpoints over and over with SIGKILL at random moments, then check
that every checkpoint left behind loads and that the newest complete one is found.

Modes (each trial uses a fresh folder):
- ``rotate``: ``fabric.save`` to ``step-N.ckpt`` (single file, the path DDP's rank 0 uses too),
  keeping the last three; the newest must be the highest step present.
- ``overwrite``: ``fabric.save`` to the same ``last.ckpt`` every time; it must load (old or new).
- ``folder``: a sharded-style folder of several files written aside and committed with
  ``weft.checkpoint.commit_folder`` onto the same name (the path sharded strategies use).
- ``naive``: a control writing ``torch.save`` straight onto ``last.ckpt``; the check must find
  corrupt files there, or it could not tell safe saving from unsafe.

Children are forked from this process, so a trial costs milliseconds rather than an interpreter
start. Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time

import torch

from weft import Fabric
from weft.checkpoint import atomic_torch_save, commit_folder, latest_checkpoint, load_file
from weft.errors import CheckpointError


def _state(fabric: Fabric) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.Linear(512, 256))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model, optimizer = fabric.setup(model, optimizer)
    model(torch.randn(2, 256)).sum().backward()
    optimizer.step()  # momentum buffers exist: the optimizer state is not empty
    return {"model": model, "optimizer": optimizer, "step": 0}


def _mark(state: dict, step: int) -> None:
    """Make every tensor of the checkpoint say which step it belongs to."""
    state["step"] = step
    with torch.no_grad():
        for p in state["model"].parameters():
            p.fill_(float(step))


def _child(mode: str, folder: str, state: dict, fabric: Fabric) -> None:
    step = 0
    while True:
        step += 1
        _mark(state, step)
        if mode == "rotate":
            fabric.save(os.path.join(folder, f"step-{step}.ckpt"), state)
            stale = os.path.join(folder, f"step-{step - 3}.ckpt")
            if os.path.exists(stale):
                os.remove(stale)
        elif mode == "naive":
            torch.save({"model": state["model"].state_dict(), "optimizer": state["optimizer"].state_dict(), "step": step}, os.path.join(folder, "last.ckpt"))
        elif mode == "overwrite":
            fabric.save(os.path.join(folder, "last.ckpt"), state)
        else:
            target = os.path.join(folder, "sharded")
            partial = tempfile.mkdtemp(prefix=".sharded.", suffix=".partial", dir=folder)
            weights = {k: v for k, v in state["model"].state_dict().items()}
            for shard in range(3):
                atomic_torch_save({k: v.clone() for k, v in weights.items()}, os.path.join(partial, f"shard-{shard}.pt"))
            atomic_torch_save({"step": step, "shards": 3}, os.path.join(partial, "meta.pt"))
            commit_folder(partial, target)


def _check(mode: str, folder: str) -> tuple[int, int, bool, int, int]:
    """(checkpoints found, corrupt ones, newest found correctly, newest step, leftover temp entries)."""
    entries = os.listdir(folder)
    hidden = [e for e in entries if e.startswith(".")]
    visible = sorted(e for e in entries if not e.startswith("."))
    corrupt, steps = 0, {}
    for name in visible:
        path = os.path.join(folder, name)
        try:
            if mode == "folder":
                meta = load_file(os.path.join(path, "meta.pt"))
                step = meta["step"]
                shards = [load_file(os.path.join(path, f"shard-{i}.pt")) for i in range(meta["shards"])]
                ok = all(bool((t == float(step)).all()) for s in shards for k, t in s.items() if k.endswith("weight"))
            else:
                saved = load_file(path)
                step = saved["step"]
                ok = all(bool((t == float(step)).all()) for k, t in saved["model"].items() if k.endswith("weight"))
                ok = ok and bool(saved["optimizer"]["state"])
            if not ok:
                raise CheckpointError(f"{path} mixes steps")
            steps[path] = step
        except (CheckpointError, KeyError, FileNotFoundError) as exc:
            print(f"CORRUPT {path}: {exc}", file=sys.stderr)
            corrupt += 1
    latest = latest_checkpoint(folder)
    if latest is not None and latest not in steps and os.path.basename(latest).startswith("."):
        # An interrupted folder overwrite: the moved-aside old folder stands in.
        steps[latest] = load_file(os.path.join(latest, "meta.pt"))["step"]
    newest_ok = latest == (max(steps, key=steps.get) if steps else None)
    return len(steps), corrupt, newest_ok, (steps.get(latest, 0) if latest else 0), len(hidden)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=24, help="per mode")
    parser.add_argument("--modes", default="rotate,overwrite,folder")
    parser.add_argument("--max-delay", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # forked children must not inherit a busy thread pool
    rng = random.Random(args.seed)
    fabric = Fabric(accelerator="cpu", devices=1)
    state = _state(fabric)
    results = {"trials": 0, "checkpoints_checked": 0, "corrupt": 0, "newest_found": 0, "killed_mid_write": 0, "no_checkpoint_yet": 0, "by_mode": {}}
    root = tempfile.mkdtemp(prefix="weft-kill-")
    started = time.perf_counter()
    try:
        for mode in args.modes.split(","):
            mode_results = {"trials": 0, "corrupt": 0, "newest_found": 0}
            for trial in range(args.trials):
                folder = os.path.join(root, f"{mode}-{trial}")
                os.makedirs(folder)
                pid = os.fork()
                if pid == 0:  # child: save until killed
                    try:
                        _child(mode, folder, state, fabric)
                    finally:
                        os._exit(1)
                time.sleep(rng.uniform(0.0, args.max_delay))
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                found, corrupt, newest_ok, _, leftovers = _check(mode, folder)
                results["trials"] += 1
                results["checkpoints_checked"] += found
                results["corrupt"] += corrupt
                results["newest_found"] += int(newest_ok)
                results["killed_mid_write"] += int(leftovers > 0)
                results["no_checkpoint_yet"] += int(found == 0)
                mode_results["trials"] += 1
                mode_results["corrupt"] += corrupt
                mode_results["newest_found"] += int(newest_ok)
                shutil.rmtree(folder)
            results["by_mode"][mode] = mode_results
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
