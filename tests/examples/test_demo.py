"""Smoke tests of the GPT demo (examples/gpt/train.py): a few steps of a tiny model, one process
and two, checkpoint, resume, sample and loss plot. Real processes, bounded by timeouts."""

from __future__ import annotations

import pytest
import torch

from conftest import ROOT, run_python

TRAIN = ROOT / "examples" / "gpt" / "train.py"
# A model small enough that a step takes milliseconds: the point is the plumbing, not the loss.
TINY = ["--block-size", "32", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "4",
        "--log-every", "2", "--eval-batches", "1", "--sample-chars", "20", "--warmup", "1"]


def train(out_dir, *extra, timeout=90):
    return run_python([TRAIN, *TINY, "--out-dir", out_dir, *extra], timeout=timeout)


def saved(out_dir):
    return torch.load(out_dir / "gpt.ckpt", weights_only=True)


def test_one_process_trains_saves_plots_and_resumes(tmp_path):
    first = train(tmp_path, "--devices", "1", "--steps", "8", "--no-progress")
    assert "strategy='single_device'" in first.stdout
    assert "tokens/s" in first.stdout and "---- sample ----" in first.stdout
    png = tmp_path / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = saved(tmp_path)
    assert checkpoint["step"] == 8
    losses = checkpoint["history"]["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0], losses  # it learns something in 8 steps

    again = train(tmp_path, "--devices", "1", "--steps", "2", "--no-progress", "--resume")
    assert "at step 8" in again.stdout
    assert "done: 10 steps" in again.stdout
    resumed = saved(tmp_path)
    assert resumed["step"] == 10
    assert resumed["history"]["resumed_at"] == [8]
    assert resumed["history"]["loss"][:4] == losses  # the curve continues the saved one


def test_resume_without_checkpoint_says_so(tmp_path):
    proc = run_python([TRAIN, "--devices", "1", "--out-dir", tmp_path, "--resume"], timeout=60, check=False)
    assert proc.returncode != 0
    assert "no checkpoint" in proc.stderr


@pytest.mark.timeout(150)
def test_two_processes_ddp_with_progress_bar_on_rank_zero(tmp_path):
    proc = train(tmp_path, "--steps", "4", timeout=140)  # defaults: 2 processes, ddp
    out = proc.stdout
    assert "strategy='ddp', devices=2" in out
    # Everything is printed by rank 0 only: one header, one bar, one summary.
    assert out.count("Fabric(") == 1
    assert out.count("done: 4 steps") == 1
    assert out.count("training:") >= 1 and "100%" in out
    assert "validation loss" in out
    checkpoint = saved(tmp_path)
    assert checkpoint["step"] == 4 and len(checkpoint["history"]["loss"]) == 2
    assert (tmp_path / "loss.png").exists()


@pytest.mark.timeout(150)
def test_two_processes_fsdp_bf16_mixed_saves_and_resumes(tmp_path):
    first = train(tmp_path, "--strategy", "fsdp", "--precision", "bf16-mixed", "--steps", "2", "--no-progress", timeout=140)
    assert "strategy='fsdp'" in first.stdout and "precision='bf16-mixed'" in first.stdout
    assert (tmp_path / "gpt.ckpt").exists()  # a sharded checkpoint: a folder
    again = train(tmp_path, "--strategy", "fsdp", "--precision", "bf16-mixed", "--steps", "2", "--no-progress", "--resume", timeout=140)
    assert "at step 2" in again.stdout and "done: 4 steps" in again.stdout
