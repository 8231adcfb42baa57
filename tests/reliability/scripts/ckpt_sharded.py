"""Two FSDP ranks (CPU, gloo), started as users start them: ``python ckpt_sharded.py MODE DIR OUT``.

Modes:
- ``damage``: save a sharded checkpoint, then for each kind of damage (a flipped byte in each
  ``.distcp`` file's tensor data, in ``.metadata``, in ``weft_meta.pt``; a deleted shard file,
  a deleted ``.metadata``) rank 0 damages the folder, every rank loads (strict and not), and
  rank 0 restores it. Reports per damage and rank: the error's type, whether it is a
  ``weft.CheckpointError`` and an ``Exception``, its message, or whether the load went through
  with wrong values ("silent").
- ``concurrent``: save the same folder ``--saves`` times, each save's tensors marked with
  (``--tag``, save number); another job does the same at the same moment.
- ``diskfull``: save a small checkpoint to DIR (a small tmpfs), then one too big for it.

``WEFT_TEST_BREAK`` restores an old behaviour so the test can show its check catches it:
``no_verify`` (load with DCP's plain reader), ``shared_scratch`` (every save writes into the
same ``.NAME.partial``, as before).
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from torch import nn

from weft import Fabric
from weft.errors import CheckpointError
from weft_fsdp import FSDPStrategy

BREAK = os.environ.get("WEFT_TEST_BREAK", "")


def _apply_breaks() -> None:
    from weft import checkpoint as wcp
    from weft_fsdp import _checkpoint

    if BREAK == "no_verify":
        from torch.distributed.checkpoint import FileSystemReader

        wcp.checked_dcp_reader = FileSystemReader
    if BREAK == "shared_scratch":
        _checkpoint.scratch_name = lambda path: os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial")
        _checkpoint._remove_stale_scratch = _old_cleanup


def _old_cleanup(path: str) -> None:
    import shutil

    partial = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial")
    if os.path.lexists(partial):
        shutil.rmtree(partial, ignore_errors=True)


def _model(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))


def _setup(fabric: Fabric, width: int = 64) -> dict:
    torch.manual_seed(0)
    model = _model(width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    fabric.backward(model(torch.randn(8, width)).pow(2).mean())
    optimizer.step()
    return {"model": model, "optimizer": optimizer, "step": 1}


def _full(model: nn.Module) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))


def _flip(path: str, offset: int) -> bytes:
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x40]))
    return old


def _pickle_start(path: str) -> int:
    """Where the bytes of ``data.pkl`` begin in a torch.save file (after its zip header)."""
    import struct
    import zipfile

    info = zipfile.ZipFile(path).infolist()[0]
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _damages(folder: str) -> list[tuple[str, str, int | None]]:
    """(name, file, byte offset to flip or None to delete) for each damage to try."""
    with open(os.path.join(folder, ".weft-checksums.json")) as f:
        items = json.load(f)["items"]
    damages = []
    for name in sorted({i["file"] for i in items}):
        biggest = max((i for i in items if i["file"] == name), key=lambda i: i["length"])
        # The middle of the largest item: inside the tensor's data (DCP torch.saves each item).
        damages.append((f"flip {name} ({biggest['fqn']})", name, biggest["offset"] + biggest["length"] // 2 + 1))
    size = os.path.getsize(os.path.join(folder, ".metadata"))
    damages.append(("flip .metadata", ".metadata", size // 2))
    damages.append(("flip weft_meta.pt", "weft_meta.pt", _pickle_start(os.path.join(folder, "weft_meta.pt")) + 10))
    damages.append(("delete __1_0.distcp", "__1_0.distcp", None))
    damages.append(("delete .metadata", ".metadata", None))
    return damages


def damage(fabric: Fabric, folder: str, out: str) -> None:
    state = _setup(fabric)
    path = os.path.join(folder, "sharded")
    fabric.save(path, state)
    expected = _full(state["model"])
    report: dict = {"rank": fabric.global_rank, "results": {}}
    damages = fabric.broadcast(_damages(path) if fabric.global_rank == 0 else None)
    for name, file, offset in damages:
        target = os.path.join(path, file)
        backup = target + ".bak"
        if fabric.global_rank == 0:
            if offset is None:
                os.replace(target, backup)
            else:
                _flip(target, offset)
        fabric.barrier()
        for strict in (True, False):
            fresh = _setup(fabric)
            try:
                fabric.load(path, fresh, strict=strict)
            except BaseException as exc:  # noqa: BLE001 - the point is to see what escapes
                outcome = {"type": type(exc).__name__, "weft": isinstance(exc, CheckpointError),
                           "exception": isinstance(exc, Exception), "message": str(exc)[:600]}
            else:
                got = _full(fresh["model"])
                same = all(torch.equal(got[k], expected[k]) for k in expected)
                outcome = {"type": None, "silent": not same}
            report["results"][f"{name} strict={strict}"] = outcome
        fabric.barrier()
        if fabric.global_rank == 0:
            if offset is None:
                os.replace(backup, target)
            else:
                _flip(target, offset)  # flip back
        fabric.barrier()
    fresh = _setup(fabric)
    fabric.load(path, fresh)  # repaired: loads again
    report["repaired_loads"] = all(torch.equal(_full(fresh["model"])[k], expected[k]) for k in expected)
    with open(f"{out}.{fabric.global_rank}", "w") as f:
        json.dump(report, f)


def concurrent(fabric: Fabric, folder: str, out: str, tag: int, saves: int) -> None:
    state = _setup(fabric)
    path = os.path.join(folder, "shared")
    errors = []
    # Both jobs start saving together: each announces it is ready and waits for the other (bounded).
    if fabric.global_rank == 0:
        open(os.path.join(folder, f"ready-{tag}"), "w").close()
    deadline = time.time() + 180
    for other in os.environ.get("CKPT_WAIT_FOR", "").split(","):
        while other and not os.path.exists(os.path.join(folder, f"ready-{other}")):
            if time.time() > deadline:
                raise SystemExit(f"job {tag} waited 180 s for job {other} to be ready")
            time.sleep(0.01)
    for number in range(saves):
        with torch.no_grad():
            for p in state["model"].parameters():
                p.to_local().fill_(tag * 1000 + number)
        state["step"] = tag * 1000 + number
        try:
            fabric.save(path, state)
        except BaseException as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            if not isinstance(exc, Exception):
                break
    with open(f"{out}.{fabric.global_rank}", "w") as f:
        json.dump({"errors": errors}, f)


def diskfull(fabric: Fabric, folder: str, out: str) -> None:
    small = _setup(fabric, width=16)
    path = os.path.join(folder, "ckpt")
    fabric.save(path, small)
    before = sorted(os.listdir(folder)), sorted(os.listdir(path))
    big = _setup(fabric, width=512)  # ~2 MB of parameters and Adam state: more than the disk holds
    outcome: dict = {}
    try:
        fabric.save(path, big)
    except BaseException as exc:  # noqa: BLE001
        outcome = {"type": type(exc).__name__, "weft": isinstance(exc, CheckpointError), "message": str(exc)[:600]}
    fabric.barrier()
    after = sorted(os.listdir(folder)), sorted(os.listdir(path))
    fresh = _setup(fabric, width=16)
    fabric.load(path, fresh)
    ok = all(torch.equal(a, b) for a, b in zip(_full(fresh["model"]).values(), _full(small["model"]).values()))
    with open(f"{out}.{fabric.global_rank}", "w") as f:
        json.dump({"outcome": outcome, "before": before, "after": after, "previous_loads": ok}, f)


def main() -> None:
    mode, folder, out = sys.argv[1:4]
    devices = int(os.environ.get("CKPT_DEVICES", "2"))
    fabric = Fabric(accelerator="cpu", strategy=FSDPStrategy(timeout=30), devices=devices)
    fabric.launch()
    _apply_breaks()
    torch.set_num_threads(1)
    if mode == "damage":
        damage(fabric, folder, out)
    elif mode == "concurrent":
        concurrent(fabric, folder, out, tag=int(sys.argv[4]), saves=int(sys.argv[5]))
    elif mode == "diskfull":
        diskfull(fabric, folder, out)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
