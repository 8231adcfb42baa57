"""The FSDP strategy on 2 CPU ranks over gloo, launched with torchrun; checkpoints reloaded at 1 and 3 ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import run_python
from weft import registry
from weft.builtins.environments import find_free_port

SCRIPT = Path(__file__).parent / "scripts" / "fsdp_run.py"

pytestmark = pytest.mark.skipif("fsdp" not in registry.names("strategies"), reason="weft-fsdp is not installed")


def torchrun(nprocs: int, *args, timeout: int = 150) -> dict:
    out = Path(args[-1])
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(nprocs), "--master-addr", "127.0.0.1",
                "--master-port", str(find_free_port())]
    command = (launcher if nprocs > 1 else []) + [str(SCRIPT), *map(str, args)]
    run_python(command, timeout=timeout)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The seed's FSDP example trained on 2 ranks, per precision (run once, read by several tests)."""
    reports = {}

    def get(precision):
        if precision not in registry.names("precisions"):
            pytest.skip(f"{precision} needs weft-precision")
        if precision not in reports:
            out = tmp_path_factory.mktemp("fsdp-train") / "train.json"
            reports[precision] = torchrun(2, "train", precision, out)
        return reports[precision]

    return get


@pytest.mark.timeout(200)
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_seed_example_trains_sharded(precision, trained):
    report = trained(precision)
    # Each rank holds half of the parameter elements (dim-0 shards; rounding at most a few rows).
    assert sum(report["local"]) == report["total"]
    for local in report["local"]:
        assert abs(local - report["total"] / 2) <= 0.02 * report["total"]
    losses = report["losses"]
    assert len(losses) == 10 and losses[-1] < 0.5 * losses[0], losses
    # Activation checkpointing: each layer runs forward once, then again during backward.
    assert report["after_forward"] == {"0": 1, "1": 1}
    assert report["after_backward"] == {"0": 2, "1": 2}
    # Clipping uses the norm over all shards, not this rank's shard.
    assert report["norm"] == pytest.approx(report["reference_norm"], rel=1e-5)
    assert abs(report["local_norm"] - report["reference_norm"]) > 1e-3
    assert report["clipped_norm"] == pytest.approx(0.5 * report["reference_norm"], rel=1e-4)
    # Mixed precision comes from the precision plugin: fp32 parameters and gradients, compute in its dtype.
    assert report["param_dtypes"] == ["torch.float32"] and report["grad_dtypes"] == ["torch.float32"]
    expected_compute = "torch.bfloat16" if precision == "bf16-mixed" else "torch.float32"
    assert report["compute_dtypes"] == [expected_compute]


@pytest.mark.timeout(200)
def test_fsdp_matches_ddp_in_fp32(trained, tmp_path):
    if "ddp" not in registry.names("strategies"):
        pytest.skip("the differential needs weft-ddp")
    fsdp = trained("32-true")["losses"]
    ddp = torchrun(2, "diff", "ddp", tmp_path / "ddp.json")["losses"]
    assert len(fsdp) == len(ddp) == 10
    assert max(abs(a - b) for a, b in zip(fsdp, ddp)) <= 1e-5, (fsdp, ddp)
    assert fsdp[-1] < fsdp[0]


@pytest.mark.timeout(200)
def test_setup_order_empty_init_accumulation_and_sharding_strategies(tmp_path):
    # Launched the way users launch: `python script.py` calling fabric.launch() with devices=2.
    out = tmp_path / "misc.json"
    run_python([SCRIPT, "misc", "-", out], timeout=150, env={"FSDP_TEST_DEVICES": "2"})
    report = json.loads(out.read_text())
    # Optimizer before its model, or built from the unsharded parameters: told what to do.
    assert "call fabric.setup_module(model) first" in report["optimizer_first"]
    assert "fabric.setup(model, optimizer)" in report["optimizer_first"]
    assert "created before fabric.setup_module(model)" in report["stale_optimizer"]
    # empty_init: meta first, then only the local half is allocated and initialised.
    assert report["meta_before"] is True and report["meta_after"] is False
    assert report["lazy_local_fraction"] == 0.5
    assert report["lazy_finite"] and report["lazy_loss_finite"]
    # no_backward_sync: nothing reduced in the skipped micro-step, and the sum is exact afterwards.
    assert report["grads_after_skipped_sync"] == 0
    assert report["accumulation_error"] <= 1e-6
    expected = {"FULL_SHARD": 0.5, "SHARD_GRAD_OP": 0.5, "NO_SHARD": 1.0, "HYBRID_1x2": 0.5, "HYBRID_2x1": 1.0}
    for label, fraction in expected.items():
        assert report[label] == {"fraction": fraction, "improved": True}, label


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsdp-checkpoints")
    report = torchrun(2, "save", folder, folder / "save.json", timeout=200)
    return folder, report


@pytest.mark.timeout(200)
def test_sharded_folder_and_full_file(saved):
    folder, _ = saved
    sharded = folder / "sharded"
    assert (sharded / ".metadata").is_file() and (sharded / "weft_meta.pt").is_file()
    assert sorted(p.name for p in sharded.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not list(folder.glob(".*partial*"))
    full = torch.load(folder / "full.pt", weights_only=True)  # plain torch, no weft involved
    assert sorted(full) == ["model", "notes", "optimizer", "step"]
    assert full["step"] == 3 and "layers.0.linear1.weight" in full["model"]
    assert full["model"]["layers.0.linear1.weight"].shape == (32, 16)


@pytest.mark.timeout(200)
def test_save_guarded_by_rank_zero_fails_in_bounded_time(saved):
    _, report = saved
    assert report["rank0_error"].startswith("CollectiveTimeoutError")
    assert "rank(s) [1]" in report["rank0_error"] and "is_global_zero" in report["rank0_error"]
    assert 5 <= report["rank0_seconds"] < 5 + 10
    assert report["guarded_exists"] is False


@pytest.mark.timeout(200)
@pytest.mark.parametrize("world", [1, 3])
def test_sharded_checkpoint_loads_at_another_world_size(saved, world, tmp_path):
    folder, _ = saved
    report = torchrun(world, "load", folder, tmp_path / "load.json")
    assert report["world"] == world
    assert report["before"] > 0.1  # the fresh model really differed
    assert report["sharded_model"] == 0.0
    assert report["sharded_optimizer"] == 0.0
    assert report["step"] == 3 and report["rest"] == ["notes"]
    assert report["full_into_sharded"] == 0.0
    if world == 1:
        assert report["sharded_into_plain"] == 0.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", ["positional", "--output"])
def test_consolidate_equals_full_save(saved, form, tmp_path, capsys):
    from weft.cli import main

    folder, _ = saved
    out = tmp_path / "consolidated.pt"
    target = [str(out)] if form == "positional" else ["--output", str(out)]
    assert main(["consolidate", str(folder / "sharded"), *target]) == 0
    assert str(out) in capsys.readouterr().out
    consolidated = torch.load(out, weights_only=True)
    full = torch.load(folder / "full.pt", weights_only=True)
    _assert_same(consolidated, full)


def test_consolidate_refuses_what_is_not_a_sharded_folder(saved, tmp_path, capsys):
    from weft.cli import main

    folder, _ = saved
    assert main(["consolidate", str(folder / "full.pt"), str(tmp_path / "x.pt")]) == 2
    assert "not a sharded checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def _assert_same(a, b, where="checkpoint"):
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where
