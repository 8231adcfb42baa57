"""Exact resume: an interrupted and resumed run ends bitwise identical to an uninterrupted one.

Each case trains a tiny model whose steps draw from every generator (dropout, augmentation from
torch/NumPy/Python, shuffled data), with different generator states per rank. The resumed run is
a fresh process (or set of processes) that only has the checkpoint to go on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_python
from weft import registry

SCRIPT = Path(__file__).parent / "scripts" / "resume_train.py"
STEPS, SAVE_AT = 10, 4  # 6 batches per epoch on one device, 3 per rank on two: step 4 is mid-epoch either way


def _final(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_identical(straight: dict, resumed: dict) -> None:
    assert straight["step"] == resumed["step"] == STEPS
    different = [n for n, p in straight["params"].items() if not torch.equal(p, resumed["params"][n])]
    assert not different, f"parameters differ after resuming: {different}"
    assert torch.equal(straight["rng_probe"], resumed["rng_probe"]), (
        f"generators did not continue exactly: {straight['rng_probe']} vs {resumed['rng_probe']}"
    )


def _parallel(*commands: list[str], timeout: float = 120) -> None:
    """Run independent script invocations at once (they share nothing but the CPU)."""
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), *c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    try:
        for proc, command in zip(procs, commands):
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{out}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.timeout(200)
@pytest.mark.parametrize("workers", [0, 2], ids=["in-process-loading", "2-workers"])
def test_single_device_resume_is_bitwise_exact(tmp_path, workers):
    common = ["--steps", STEPS, "--workers", workers]
    common = [str(c) for c in common]
    ckpt = tmp_path / "step4.ckpt"
    # The uninterrupted run, and a run that stops for good after saving at step 4.
    _parallel(
        [*common, "--out", str(tmp_path / "straight.pt")],
        [*common, "--save-at", str(SAVE_AT), "--ckpt", str(ckpt), "--out", str(tmp_path / "unused")],
    )
    assert not (tmp_path / "unused").exists()
    run_python([SCRIPT, *common, "--resume", ckpt, "--out", tmp_path / "resumed.pt"], timeout=120)
    _assert_identical(_final(tmp_path / "straight.pt"), _final(tmp_path / "resumed.pt"))

    saved = torch.load(ckpt, weights_only=True)
    assert saved["loader"]["epoch"] == 0 and saved["loader"]["batches_consumed"] == SAVE_AT
    if workers == 0:
        # Control: without the RNG entry the same resume must NOT match (the comparison can fail).
        run_python([SCRIPT, *common, "--resume", ckpt, "--skip-rng", "--out", tmp_path / "no_rng.pt"], timeout=120)
        control = _final(tmp_path / "no_rng.pt")
        assert any(not torch.equal(p, control["params"][n]) for n, p in _final(tmp_path / "straight.pt")["params"].items())


@pytest.mark.timeout(200)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_rank_resume_is_bitwise_exact(tmp_path, strategy):
    if strategy not in registry.names("strategies"):
        pytest.skip(f"strategy {strategy!r} is not installed")
    common = ["--strategy", strategy, "--devices", "2", "--steps", str(STEPS)]
    ckpt = tmp_path / "step4.ckpt"
    # The uninterrupted run saves at step 4 on its way (saving must not disturb it); then fresh
    # processes resume from that checkpoint.
    run_python(
        [SCRIPT, *common, "--save-at", SAVE_AT, "--keep-going", "--ckpt", ckpt, "--out", tmp_path / "straight.pt"],
        timeout=150,
    )
    run_python([SCRIPT, *common, "--resume", ckpt, "--out", tmp_path / "resumed.pt"], timeout=150)
    _assert_identical(_final(tmp_path / "straight.pt"), _final(tmp_path / "resumed.pt"))
    # Two ranks' generator states were gathered into the checkpoint (rank 0 alone writes it).
    probes = _final(tmp_path / "straight.pt")["rng_probe"]
    assert probes.shape[0] == 2 and not torch.equal(probes[0], probes[1])


def _differs(a: dict, b: dict) -> bool:
    return any(not torch.equal(p, b["params"][n]) for n, p in a["params"].items())


@pytest.mark.timeout(420)
def test_two_rank_resume_with_loader_workers_is_bitwise_exact(tmp_path):
    """DDP, 2 ranks, num_workers=2: the augmentation draws from torch, NumPy and Python inside the
    workers, whose seeds come from each rank's own generator at the epoch's start, so every rank's
    loader state must reach the checkpoint that rank 0 alone writes."""
    if "ddp" not in registry.names("strategies"):
        pytest.skip("strategy 'ddp' is not installed")
    common = ["--strategy", "ddp", "--devices", "2", "--steps", str(STEPS), "--workers", "2"]
    ckpt, rank0_ckpt = tmp_path / "step4.ckpt", tmp_path / "rank0-step4.ckpt"
    run_python(
        [SCRIPT, *common, "--save-at", SAVE_AT, "--keep-going", "--ckpt", ckpt, "--out", tmp_path / "straight.pt"],
        timeout=180,
    )
    run_python([SCRIPT, *common, "--resume", ckpt, "--out", tmp_path / "resumed.pt"], timeout=180)
    straight = _final(tmp_path / "straight.pt")
    _assert_identical(straight, _final(tmp_path / "resumed.pt"))

    loader = torch.load(ckpt, weights_only=True)["loader"]
    assert loader["world_size"] == 2 and loader["batches_consumed"] == SAVE_AT - 3  # 3 batches per rank and epoch
    first, second = loader["rank_generators"]
    assert not torch.equal(first["torch"], second["torch"]), "both entries are one rank's"

    # The broken variant: every rank resumes from rank 0's loader entry (what saving only the
    # writer's loader state amounts to). The same comparison must see the difference.
    broken = run_python(
        [SCRIPT, *common, "--resume", ckpt, "--out", tmp_path / "broken.pt"],
        timeout=180, env={"WEFT_TEST_BREAK": "rank0-loader-state"},
    )
    assert broken.returncode == 0
    assert _differs(straight, _final(tmp_path / "broken.pt")), "resuming from rank 0's loader state went unnoticed"

    # `if fabric.is_global_zero: fabric.save(...)` with a loader in the state: still every rank's
    # position, read from the process group's store (no collective that rank 1 would have to join).
    run_python(
        [SCRIPT, *common, "--save-at", SAVE_AT, "--rank0-save", "--ckpt", rank0_ckpt, "--out", tmp_path / "unused"],
        timeout=180,
    )
    from_rank0 = torch.load(rank0_ckpt, weights_only=True)["loader"]["rank_generators"]
    for saved, expected in zip(from_rank0, (first, second)):
        assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)


def test_mid_epoch_loader_position_needs_the_world_size_that_saved_it():
    """A position in the middle of an epoch cannot be honoured by another number of ranks (the
    remaining batches depend on the split): refused, with the ways out named. At an epoch's end it can."""
    from torch.utils.data import DataLoader, TensorDataset

    from weft import Fabric
    from weft.errors import CheckpointError

    loader = Fabric(accelerator="cpu", devices=1).setup_dataloaders(DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2))
    saved = {"epoch": 1, "batches_consumed": 1, "length": 2, "world_size": 2, "rank_generators": [None, None]}
    with pytest.raises(CheckpointError, match=r"saved by 2 processes and this run has 1.*Resume with 2 processes"):
        loader.load_state_dict(saved)
    loader.load_state_dict({**saved, "batches_consumed": 2})  # epoch 1 complete: epoch 2 starts afresh
    assert loader.state_dict()["epoch"] == 2 and loader.state_dict()["batches_consumed"] == 0
