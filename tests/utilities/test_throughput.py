"""Throughput, ThroughputMonitor and measure_flops: unit checks, and the same numbers as
Lightning's on the same inputs (lightning is imported here only, never by weft)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from weft import Fabric
from weft.utilities import Throughput, ThroughputMonitor, measure_flops
from weft.utilities import throughput as throughput_module

lightning_throughput = pytest.importorskip("lightning.fabric.utilities.throughput")


def feed(meter, updates):
    for update in updates:
        meter.update(**update)
    return meter.compute()


def random_updates(seed, count, lengths=True, flops=True):
    """Running totals as a training loop passes them: uneven step times, batch sizes and lengths."""
    rng = random.Random(seed)
    time = batches = samples = items = 0
    updates = []
    for _ in range(count):
        time += rng.uniform(0.05, 0.5)
        batches += 1
        size = rng.randint(1, 8)
        samples += size
        items += size * rng.randint(1, 64)
        update = {"time": time, "batches": batches, "samples": samples}
        if lengths:
            update["lengths"] = items
        if flops:
            update["flops"] = rng.randint(10**9, 10**10)
        updates.append(update)
    return updates


def assert_same(ours, theirs):
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert math.isclose(ours[key], theirs[key], rel_tol=1e-12), (key, ours[key], theirs[key])


@pytest.mark.parametrize("world_size", [1, 3])
@pytest.mark.parametrize("lengths, flops", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("count", [3, 4, 11])  # before, at and past the window filling
def test_same_metrics_as_lightning(world_size, lengths, flops, count):
    updates = random_updates(count, count, lengths=lengths, flops=flops)
    kwargs = {"available_flops": 3e11, "world_size": world_size, "window_size": 4}
    ours = feed(Throughput(**kwargs), updates)
    theirs = feed(lightning_throughput.Throughput(**kwargs), updates)
    assert_same(ours, theirs)
    if count >= 4:
        assert "device/samples_per_sec" in ours and ("samples_per_sec" in ours) == (world_size > 1)
        assert ("device/mfu" in ours) == flops


def test_a_broken_formula_is_caught(monkeypatch):
    """The comparison above has teeth: a rate off by the window's first step fails it."""
    updates = random_updates(0, 6)
    right = Throughput.compute

    def off_by_one(self):  # divides by the window's length instead of the steps between its ends
        metrics = right(self)
        metrics["device/samples_per_sec"] *= (len(self._time) - 1) / len(self._time)
        return metrics

    monkeypatch.setattr(Throughput, "compute", off_by_one)
    with pytest.raises(AssertionError, match="device/samples_per_sec"):
        assert_same(feed(Throughput(window_size=4), updates), feed(lightning_throughput.Throughput(window_size=4), updates))


def test_rates_by_hand():
    meter = Throughput(available_flops=100.0, world_size=2, window_size=2, separator="|")
    meter.update(time=1.0, batches=1, samples=4, lengths=40, flops=50)
    meter.update(time=3.0, batches=3, samples=12, lengths=100, flops=60)
    assert meter.compute() == {
        "time": 3.0, "batches": 3, "samples": 12, "lengths": 100,
        "device|batches_per_sec": 1.0, "batches_per_sec": 2.0,
        "device|samples_per_sec": 4.0, "samples_per_sec": 8.0,
        "device|items_per_sec": 30.0, "items_per_sec": 60.0,
        # 60 FLOPs per device ran between t=1 and t=3 (the 50 were before the window opened)
        "flops_per_sec": 60.0, "device|flops_per_sec": 30.0, "device|mfu": 0.3,
    }
    meter.reset()
    with pytest.raises(ValueError, match="before any update"):
        meter.compute()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"world_size": 0}, "world_size=0"),
        ({"window_size": 1}, "window_size=1"),
        ({"available_flops": -1.0}, "available_flops=-1.0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Throughput(**kwargs)


def test_bad_updates_are_named_and_leave_the_meter_unchanged():
    meter = Throughput(window_size=2)
    meter.update(time=1.0, batches=1, samples=2, lengths=4)
    with pytest.raises(ValueError, match=r"update\(time=0.5\).*running total"):
        meter.update(time=0.5, batches=2, samples=4, lengths=8)
    with pytest.raises(ValueError, match=r"samples=1, batches=2"):
        meter.update(time=2.0, batches=2, samples=1, lengths=8)
    with pytest.raises(ValueError, match=r"lengths=3, samples=4"):
        meter.update(time=2.0, batches=2, samples=4, lengths=3)
    with pytest.raises(ValueError, match=r"update\(lengths=None\).*every call"):
        meter.update(time=2.0, batches=2, samples=4)
    with pytest.raises(ValueError, match=r"update\(flops=5\).*every call"):
        meter.update(time=2.0, batches=2, samples=4, lengths=8, flops=5)
    meter.update(time=2.0, batches=2, samples=4, lengths=8)  # the rejected calls recorded nothing
    assert meter.compute()["device/samples_per_sec"] == 2.0


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))

    def forward(self, x):
        return self.layers(x)


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("with_loss", [False, True])
def test_measure_flops_same_as_lightning(device, with_loss):
    with torch.device(device):
        model = Tiny()
        x = torch.randn(5, 32)
    loss_fn = (lambda y: y.sum()) if with_loss else None
    ours = measure_flops(model, lambda: model(x), loss_fn)
    model.zero_grad()
    theirs = lightning_throughput.measure_flops(model, lambda: model(x), loss_fn)
    first, second = 2 * 5 * 32 * 64, 2 * 5 * 64 * 8  # a multiply and an add per weight per sample
    # Backward: weight gradients of both layers, the input gradient of the second only (x needs none).
    expected = 3 * (first + second) - first if with_loss else first + second
    assert ours == theirs == expected


def test_monitor_on_cpu_has_no_mfu_and_matches_lightnings_compute():
    fabric = Fabric(accelerator="cpu", devices=1)
    monitor = ThroughputMonitor(fabric, window_size=3)
    assert monitor.available_flops is None and monitor.world_size == 1  # a CPU's peak is never guessed
    updates = random_updates(1, 5)
    theirs = feed(lightning_throughput.Throughput(available_flops=None, world_size=1, window_size=3), updates)
    assert_same(feed(monitor, updates), theirs)
    assert "device/mfu" not in theirs


class Recorder:
    def __init__(self):
        self.logged = []

    def log_dict(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))


def test_compute_and_log_counts_steps_and_logs_through_log_dict():
    fabric = Fabric(accelerator="cpu", devices=1)
    recorder = Recorder()
    fabric.log_dict = recorder.log_dict  # stands in for the logging core's method
    monitor = ThroughputMonitor(fabric, window_size=2)
    monitor.update(time=1.0, batches=1, samples=2)
    first = monitor.compute_and_log()
    monitor.update(time=2.0, batches=2, samples=4)
    second = monitor.compute_and_log()
    third = monitor.compute_and_log(step=10)
    assert [step for step, _ in recorder.logged] == [0, 1, 10]
    assert recorder.logged[0][1] == first and recorder.logged[1][1] == second == third
    assert second["device/samples_per_sec"] == 2.0


def test_compute_and_log_without_log_dict_says_what_to_do(monkeypatch):
    fabric = Fabric(accelerator="cpu", devices=1)
    monkeypatch.delattr(type(fabric), "log_dict", raising=False)
    monitor = ThroughputMonitor(fabric)
    monitor.update(time=1.0, batches=1, samples=1)
    with pytest.raises(AttributeError, match="fabric.log_dict"):
        monitor.compute_and_log()


def test_monitor_does_nothing_off_rank_zero():
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric._global_rank = 1  # as on a second process
    monitor = ThroughputMonitor(fabric)
    monitor.update(time=1.0, batches=5, samples=1)  # invalid, but not even checked there
    assert monitor.compute() == {} and monitor.compute_and_log() == {} and monitor.step == -1


def test_monitor_takes_world_size_and_flops_from_the_fabric():
    fabric = Fabric(accelerator="cpu", devices=1)
    with pytest.raises(TypeError, match="world_size"):
        ThroughputMonitor(fabric, world_size=4)


def test_monitor_before_launch_with_several_processes_is_refused():
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    with pytest.raises(RuntimeError, match="fabric.launch"):
        ThroughputMonitor(fabric)


def test_monitor_asks_for_the_precisions_compute_dtype(monkeypatch):
    seen = []
    monkeypatch.setattr(throughput_module, "get_available_flops", lambda device, dtype: seen.append(dtype) or 5e12)
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-true")
    assert ThroughputMonitor(fabric).available_flops == 5e12
    assert seen == [torch.bfloat16]


def test_monitor_logs_what_lightnings_monitor_logs():
    from lightning.fabric import Fabric as LightningFabric

    updates = random_updates(2, 7)
    logged = []
    for fabric in (Fabric(accelerator="cpu", devices=1), LightningFabric(accelerator="cpu", devices=1)):
        recorder = Recorder()
        fabric.log_dict = recorder.log_dict
        module = throughput_module if isinstance(fabric, Fabric) else lightning_throughput
        monitor = module.ThroughputMonitor(fabric, window_size=3)
        assert monitor.available_flops is None and monitor.world_size == 1
        for i, update in enumerate(updates):
            monitor.update(**update)
            if i % 2:
                monitor.compute_and_log(step=None if i < 5 else 100 + i)
        logged.append(recorder.logged)
    ours, theirs = logged
    assert [step for step, _ in ours] == [step for step, _ in theirs] == [0, 1, 105]
    for (_, a), (_, b) in zip(ours, theirs):
        assert_same(a, b)
