"""Checkpoints survive SIGKILL at any moment: whatever exists afterwards loads, and the newest is found."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from conftest import run_python
from weft.checkpoint import atomic_torch_save, latest_checkpoint

SCRIPT = Path(__file__).parent / "scripts" / "kill_during_save.py"


@pytest.mark.timeout(120)
def test_sigkill_during_saves_leaves_only_loadable_checkpoints():
    proc = run_python([SCRIPT, "--trials", "8", "--modes", "rotate,overwrite,folder"], timeout=110)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["trials"] >= 20
    assert figures["corrupt"] == 0, proc.stderr
    assert figures["newest_found"] == figures["trials"]
    # The kills must actually land during writes, or the test proves nothing.
    assert figures["killed_mid_write"] >= 3, figures
    assert figures["checkpoints_checked"] > 0


@pytest.mark.timeout(60)
def test_the_check_detects_unsafe_saving():
    """Control: plain torch.save onto the target, killed the same way, leaves corrupt files."""
    proc = run_python([SCRIPT, "--trials", "10", "--modes", "naive", "--seed", "3"], timeout=55)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["corrupt"] > 0, figures


def test_latest_checkpoint_orders_by_write_time_then_step_number(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for step in (9, 10, 2):
        atomic_torch_save({"step": step}, tmp_path / f"step-{step}.ckpt")
    (tmp_path / ".step-11.ckpt.abc.tmp").write_bytes(b"half a file")  # a write that was interrupted
    now = time.time()
    for step in (2, 9, 10):
        os.utime(tmp_path / f"step-{step}.ckpt", (now, now))  # equal times: the step number decides
    assert latest_checkpoint(tmp_path) == str(tmp_path / "step-10.ckpt")
    os.utime(tmp_path / "step-2.ckpt", (now + 5, now + 5))  # written last wins
    assert latest_checkpoint(tmp_path) == str(tmp_path / "step-2.ckpt")
    assert latest_checkpoint(tmp_path, "step-1*.ckpt") == str(tmp_path / "step-10.ckpt")


def test_latest_checkpoint_recovers_a_folder_moved_aside_by_an_interrupted_overwrite(tmp_path):
    old = tmp_path / ".sharded.old.x1y2"
    old.mkdir()
    torch.save({"step": 3}, old / "meta.pt")
    assert latest_checkpoint(tmp_path) == str(old)
    (tmp_path / "sharded").mkdir()  # once the new folder is in place, it is the one
    assert latest_checkpoint(tmp_path) == str(tmp_path / "sharded")
