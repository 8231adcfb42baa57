"""Every precision under DDP with 2 CPU processes, launched as users launch: `python script.py`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_python

from weft import registry

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))  # the seed loop, shared with the subprocess scripts
from seed_loop import PRECISIONS  # noqa: E402

SCRIPT = SCRIPTS / "train_ddp.py"

pytestmark = pytest.mark.skipif("ddp" not in registry.names("strategies"), reason="weft-ddp is not installed")


@pytest.fixture(scope="module")
def ddp_results():
    proc = run_python([SCRIPT, *PRECISIONS], timeout=240)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line[len("RESULT ") :])
            results[record["precision"]] = record
    assert sorted(results) == sorted(PRECISIONS), proc.stdout + proc.stderr
    return results


@pytest.mark.timeout(300)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_seed_loop_trains_under_ddp(ddp_results, precision):
    result = ddp_results[precision]
    assert result["world_size"] == 2 and result["strategy"] == "ddp"
    losses = result["losses"]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result["replicas_equal"], "the two replicas diverged"
    expected = {"bf16-true": torch.bfloat16, "64-true": torch.float64}.get(precision, torch.float32)
    assert result["param_dtype"] == str(expected)


@pytest.mark.timeout(300)
def test_16_mixed_overflow_on_one_rank_skips_the_step_on_every_rank(ddp_results):
    result = ddp_results["16-mixed"]
    assert result["scaler"] == "ShardedGradScaler"
    overflow = result["overflow"]
    assert overflow["skipped"]
    assert overflow["scale_after"] == overflow["scale_before"] / 2
    assert result["overflow_all"] == [overflow["scale_after"]] * 2  # both ranks lowered the scale alike
