"""weft-ddp on 2 CPU processes over gloo, launched the ways users launch it."""

import json
import sys

import pytest

from ddp_helpers import SCRIPTS, check_data_parallel, free_port, rank_results

pytestmark = pytest.mark.slow
TRAIN = SCRIPTS / "train.py"
WEFT_RUN = ["-m", "weft.cli", "run"]


@pytest.mark.timeout(150)
def test_seed_loop_started_with_python(python, tmp_path):
    proc = python([TRAIN, tmp_path], timeout=120)
    results = rank_results(tmp_path, 2)
    check_data_parallel(results)
    assert {r["environment"] for r in results} == {"torchelastic"}
    assert {r["strategy"] for r in results} == {"ddp"}
    assert proc.stdout.count("done after step 16") == 2, "the supervising process must not run the script itself"


@pytest.mark.timeout(200)
def test_losses_bitwise_equal_to_raw_torch_ddp(python, tmp_path):
    python([SCRIPTS / "differential.py", "weft", tmp_path], timeout=120)
    port = free_port()
    python(
        ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", port,
         SCRIPTS / "differential.py", "raw", tmp_path],
        timeout=120,
    )
    for rank in (0, 1):
        weft_losses = json.loads((tmp_path / f"weft-rank{rank}.json").read_text())
        raw_losses = json.loads((tmp_path / f"raw-rank{rank}.json").read_text())
        assert len(weft_losses) == 12
        assert weft_losses == raw_losses, f"rank {rank}: weft and raw DDP losses differ"


@pytest.mark.timeout(150)
def test_no_backward_sync_and_clip_gradients(python):
    proc = python([SCRIPTS / "accumulate.py"], timeout=120)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert report["accumulating_grads_differ"] == [True, True], "no_backward_sync did not skip the all-reduce"
    assert report["synced_grads_equal"] == [True, True], "the syncing micro-step left ranks with different gradients"
    assert all(n > report["max_norm"] for n in report["norms_before"]), "clipping was never exercised"
    assert all(n <= report["max_norm"] * 1.0001 for n in report["norms_after"])


@pytest.mark.timeout(240)
def test_seed_loop_with_weft_run_and_is_global_zero_checkpoint_resume(python, tmp_path):
    """`weft run --devices 2` trains the seed loop, rank 0 alone saves after each epoch (the
    seed's `if fabric.is_global_zero: fabric.save(...)`), the job finishes, and a fresh run
    on another world size resumes the same state and trains on."""
    ckpt = tmp_path / "ckpt" / "last.pt"
    first = tmp_path / "first"
    python([*WEFT_RUN, "--devices", "2", "--accelerator", "cpu", TRAIN, first, "--defaults", "--ckpt", ckpt], timeout=120)
    saved = rank_results(first, 2)
    check_data_parallel(saved)
    assert {(r["strategy"], r["devices"], r["environment"]) for r in saved} == {("ddp", 2, "torchelastic")}
    assert ckpt.is_file()
    assert [p.name for p in ckpt.parent.iterdir()] == ["last.pt"], "a temporary file was left next to the checkpoint"

    second = tmp_path / "second"
    python(
        [*WEFT_RUN, "--devices", "1", "--strategy", "ddp", TRAIN, second, "--defaults", "--ckpt", ckpt, "--resume", "--epochs", "3"],
        timeout=120,
    )
    (resumed,) = rank_results(second, 1)
    assert resumed["world_size"] == 1
    assert resumed["resumed"]["epoch"] == 1
    assert resumed["resumed"]["step"] == saved[0]["step"] == 16
    assert resumed["resumed"]["digests"] == [saved[0]["params"], saved[0]["optimizer_state"]]
    assert resumed["step"] == 16 + 16  # one more epoch: 64 samples in batches of 4 on one process
    assert resumed["params"] != saved[0]["params"]
