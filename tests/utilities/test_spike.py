"""SpikeDetection: stops where Lightning's stops, on the same losses, and writes the same file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from weft import Fabric
from weft.utilities import SpikeDetection, TrainingSpikeException

INF, NAN = math.inf, math.nan
CASES = {
    "steady": [2.0, 1.9, 1.8, 1.7, 1.6, 1.5],
    "spike": [2.0, 1.9, 1.8, 1.7, 9.0, 1.5],
    "small bump": [2.0, 1.9, 1.8, 2.5, 1.6],  # worse than the last, but within rtol of the mean
    "nan": [2.0, 1.9, NAN, 1.7],
    "inf in warmup": [INF, 1.9, 1.8],
    "max mode drop": [1.0, 2.0, 3.0, -5.0],
}
SETTINGS = [
    {},
    {"mode": "max"},
    {"window": 2, "warmup": 2, "atol": 0.5, "rtol": None},
    {"rtol": 0.1},
    {"finite_only": False},
]


def run(callback, fabric, losses):
    """Feed the losses; the batch index it stopped at (None when it did not)."""
    for batch_idx, loss in enumerate(losses):
        try:
            callback.on_train_batch_end(fabric=fabric, loss=torch.tensor(loss), batch=None, batch_idx=batch_idx)
        except Exception as exc:  # noqa: BLE001 - the two libraries raise their own classes
            assert type(exc).__name__ == "TrainingSpikeException" and str(exc) == f"Training spike detected in batch {batch_idx}"
            return batch_idx
    return None


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
@pytest.mark.parametrize("case", CASES)
def test_stops_where_lightning_stops(tmp_path, settings, case):
    pytest.importorskip("torchmetrics")
    from lightning.fabric import Fabric as LightningFabric
    from lightning.fabric.utilities.spike import SpikeDetection as LightningSpikeDetection

    results = []
    for name, cls, fabric in (("weft", SpikeDetection, Fabric(accelerator="cpu", devices=1)),
                              ("lightning", LightningSpikeDetection, LightningFabric(accelerator="cpu", devices=1))):
        path = tmp_path / name / "skip.json"
        stopped = run(cls(exclude_batches_path=path, **settings), fabric, CASES[case])
        results.append((stopped, json.loads(path.read_text()) if path.exists() else None))
    assert results[0] == results[1]


def test_a_spike_writes_the_batches_to_skip_and_raises(tmp_path):
    callback = SpikeDetection(exclude_batches_path=tmp_path / "run")
    fabric = Fabric(accelerator="cpu", devices=1)
    with pytest.raises(TrainingSpikeException, match="batch 4"):
        run_raising(callback, fabric, CASES["spike"])
    assert json.loads((tmp_path / "run" / "skip_batches.json").read_text()) == [3, 4]


def run_raising(callback, fabric, losses):
    for batch_idx, loss in enumerate(losses):
        callback.on_train_batch_end(fabric, torch.tensor(loss), None, batch_idx)


def test_state_round_trip_continues_the_running_mean(tmp_path):
    fabric = Fabric(accelerator="cpu", devices=1)
    first = SpikeDetection(window=3, exclude_batches_path=tmp_path)
    run_raising(first, fabric, [2.0, 1.9, 1.8, 1.7])
    state = json.loads(json.dumps(first.state_dict()))  # plain data: fits in a checkpoint
    second = SpikeDetection(window=3)
    second.load_state_dict(state)
    assert second.running_mean() == pytest.approx(first.running_mean()) == pytest.approx((1.9 + 1.8 + 1.7) / 3)
    assert second.last_val == pytest.approx(1.7) and second.exclude_batches_path == str(tmp_path / "skip_batches.json")


@pytest.mark.parametrize("kwargs, message", [({"mode": "low"}, "mode='low'"), ({"window": 0}, "window=0")])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpikeDetection(**kwargs)


def test_a_loss_per_sample_is_judged_element_by_element(tmp_path):
    # Lightning's version raises on a loss with several elements (bool() of a vector); weft's accepts it.
    callback = SpikeDetection(exclude_batches_path=tmp_path)
    with pytest.raises(TrainingSpikeException, match="batch 2"):
        run_raising(callback, Fabric(accelerator="cpu", devices=1), [[2.0, 2.1], [1.9, 2.0], [1.8, 9.0]])
