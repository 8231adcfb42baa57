"""Smoke tests of the GPT demo (examples/gpt/train.py): a few steps of a tiny model, one process
and two, checkpoint, resume, sample, CSV metrics (loss, validation loss, throughput) and the loss
plot drawn from them. Real processes, bounded by timeouts."""

from __future__ import annotations

import csv
import importlib.util

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


def logged(out_dir, run):
    """The rows of one run's CSV log (``run``: an entry of the checkpoint's ``runs``)."""
    with open(out_dir / run["log_dir"] / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def column(rows, name):
    """(step, value) of the rows that have ``name``."""
    return [(int(row["step"]), float(row[name])) for row in rows if row.get(name)]


def test_one_process_trains_saves_plots_and_resumes(tmp_path):
    first = train(tmp_path, "--devices", "1", "--steps", "8", "--no-progress")
    assert "strategy='single_device'" in first.stdout
    assert "tokens/s" in first.stdout and "---- sample ----" in first.stdout
    png = tmp_path / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = saved(tmp_path)
    assert checkpoint["step"] == 8
    [run] = checkpoint["runs"]
    assert run["start"] == 0 and run["log_dir"].startswith("logs")
    rows = logged(tmp_path, run)
    losses = column(rows, "train_loss")
    assert [step for step, _ in losses] == [2, 4, 6, 8]
    assert losses[-1][1] < losses[0][1], losses  # it learns something in 8 steps
    assert [step for step, _ in column(rows, "val_loss")] == [8]
    # ThroughputMonitor's metrics, one process: per-device rates only, no MFU on a CPU.
    tokens = column(rows, "device/items_per_sec")
    assert [step for step, _ in tokens] == [2, 4, 6, 8] and all(rate > 0 for _, rate in tokens)
    assert column(rows, "lengths")[-1] == (8, 8 * 4 * 32)  # tokens seen: steps x batch x block
    assert column(rows, "device/flops_per_sec") and not column(rows, "device/mfu") and not column(rows, "items_per_sec")
    if importlib.util.find_spec("weft_loggers") and importlib.util.find_spec("tensorboard"):
        assert list((tmp_path / "logs" / "tensorboard").glob("version_0/events.out.tfevents.*"))

    again = train(tmp_path, "--devices", "1", "--steps", "2", "--no-progress", "--resume")
    assert "at step 8" in again.stdout
    assert "done: 10 steps" in again.stdout
    resumed = saved(tmp_path)
    assert resumed["step"] == 10
    first, second = resumed["runs"]
    assert first == run and second["start"] == 8 and second["log_dir"] != run["log_dir"]
    assert column(logged(tmp_path, first), "train_loss") == losses  # the first run's log is left as it was
    assert [step for step, _ in column(logged(tmp_path, second), "train_loss")] == [10]


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
    assert checkpoint["step"] == 4
    rows = logged(tmp_path, checkpoint["runs"][0])
    assert [step for step, _ in column(rows, "train_loss")] == [2, 4]  # each loss once: rank 0 alone writes
    # Two processes: the global rate is the device's times two.
    device_rates, rates = column(rows, "device/items_per_sec"), column(rows, "items_per_sec")
    assert len(rates) == len(device_rates) == 2
    for (_, device_rate), (_, rate) in zip(device_rates, rates):
        assert rate == pytest.approx(2 * device_rate)
    assert (tmp_path / "loss.png").exists()


@pytest.mark.timeout(150)
def test_two_processes_fsdp_bf16_mixed_saves_and_resumes(tmp_path):
    first = train(tmp_path, "--strategy", "fsdp", "--precision", "bf16-mixed", "--steps", "2", "--no-progress", timeout=140)
    assert "strategy='fsdp'" in first.stdout and "precision='bf16-mixed'" in first.stdout
    assert (tmp_path / "gpt.ckpt").exists()  # a sharded checkpoint: a folder
    again = train(tmp_path, "--strategy", "fsdp", "--precision", "bf16-mixed", "--steps", "2", "--no-progress", "--resume", timeout=140)
    assert "at step 2" in again.stdout and "done: 4 steps" in again.stdout
