"""Throughput (batches, samples, items and FLOPs per second) and MFU, as Lightning computes them.

:class:`Throughput` turns running totals into rates over a window of recent updates;
:class:`ThroughputMonitor` takes the world size and the device's peak FLOP/s from a Fabric and
logs through ``fabric.log_dict``; :func:`measure_flops` counts a model's FLOPs. Names,
arguments and the keys of the returned dicts are Lightning's, so code and dashboards carry over.

Keys ``compute()`` returns (``/`` is ``separator``); the rates appear once ``window_size``
updates were made, the global ones (no ``device/`` prefix) only when ``world_size > 1``:

``time``, ``batches``, ``samples``, ``lengths``: the latest totals passed to ``update``.
``device/batches_per_sec``, ``device/samples_per_sec``, ``device/items_per_sec`` (items from
``lengths``, e.g. tokens), ``device/flops_per_sec``: this device's rates over the window.
``batches_per_sec``, ``samples_per_sec``, ``items_per_sec``, ``flops_per_sec``: the device's
rate times ``world_size`` (every device is assumed alike).
``device/mfu``: ``device/flops_per_sec`` over the device's peak, when the peak is known.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from weft.utilities.flops import get_available_flops
from weft.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from weft.fabric import Fabric

_THROUGHPUT_METRICS = dict[str, Union[int, float]]


class Throughput:
    """Rates over the last ``window_size`` calls of :meth:`update`.

    :param available_flops: peak FLOP/s of one device (for ``device/mfu``); ``None``: no MFU.
    :param world_size: devices across all machines; the global rates are the per-device ones
        times this, and are left out when it is 1.
    :param window_size: updates the rates are computed over (at least 2: a rate needs two ends).
    :param separator: between ``device`` and the metric name in the per-device keys.
    """

    def __init__(
        self, available_flops: Optional[float] = None, world_size: int = 1, window_size: int = 100, separator: str = "/"
    ) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size={world_size!r}: pass the number of devices, an int >= 1")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f"window_size={window_size!r}: pass an int >= 2 (a rate needs at least two updates)")
        if available_flops is not None and not available_flops > 0:
            raise ValueError(f"available_flops={available_flops!r}: pass the device's peak FLOP/s (> 0), or None for no MFU")
        self.available_flops = available_flops
        self.world_size = world_size
        self.separator = separator
        self._time: _MonotonicWindow = _MonotonicWindow("time", window_size)
        self._batches: _MonotonicWindow = _MonotonicWindow("batches", window_size)
        self._samples: _MonotonicWindow = _MonotonicWindow("samples", window_size)
        self._lengths: _MonotonicWindow = _MonotonicWindow("lengths", window_size)
        # FLOPs since the previous update, summed over devices (not a running total).
        self._flops: deque[float] = deque(maxlen=window_size)

    def update(self, *, time: float, batches: int, samples: int, lengths: Optional[int] = None, flops: Optional[int] = None) -> None:
        """Record the totals so far on this device.

        :param time: seconds since the start; must increase with each call.
        :param batches: batches processed so far; must increase.
        :param samples: samples processed so far (>= ``batches``); must increase.
        :param lengths: items (e.g. tokens) processed so far (>= ``samples``); must increase.
            Pass it in every call or in none.
        :param flops: FLOPs this device ran since the previous call (e.g. :func:`measure_flops`
            times the batches since then). Pass it in every call or in none.
        """
        # Check everything before recording anything: a rejected call leaves the windows as they were.
        if samples < batches:
            raise ValueError(f"update(samples={samples}, batches={batches}): samples must be >= batches (a batch holds at least one sample)")
        if lengths is not None and lengths < samples:
            raise ValueError(f"update(lengths={lengths}, samples={samples}): lengths must be >= samples (a sample holds at least one item)")
        for window, value in ((self._time, time), (self._batches, batches), (self._samples, samples)):
            window.check(value)
        if lengths is not None:
            self._lengths.check(lengths)
        # Rates divide the window's totals by the window's time: that is only right when the
        # optional totals were given alongside every time in the window.
        self._check_given_every_time("lengths", lengths, self._lengths)
        self._check_given_every_time("flops", flops, self._flops)
        self._time.append(time)
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            self._lengths.append(lengths)
        if flops is not None:
            self._flops.append(flops * self.world_size)

    def _check_given_every_time(self, name: str, value: Any, window: Any) -> None:
        given_before = len(window) > 0
        if (value is not None) != given_before and len(self._time) > 0:
            was = "was given" if given_before else "was not given"
            raise ValueError(
                f"update({name}={value!r}): {name} {was} in the earlier calls; pass it in every call to update() or in "
                "none (call reset() to start over)"
            )

    def compute(self) -> _THROUGHPUT_METRICS:
        """The latest totals and, once the window is full, the rates (see the module for the keys)."""
        if not self._time:
            raise ValueError("Throughput.compute() before any update(): call update(time=..., batches=..., samples=...) first")
        dev = f"device{self.separator}"
        metrics: _THROUGHPUT_METRICS = {"time": self._time[-1], "batches": self._batches[-1], "samples": self._samples[-1]}
        if self._lengths:
            metrics["lengths"] = self._lengths[-1]
        several = self.world_size > 1
        if not self._time.full:
            return metrics
        elapsed = self._time[-1] - self._time[0]  # > 0: times strictly increase
        per_device = {
            "batches_per_sec": (self._batches[-1] - self._batches[0]) / elapsed,
            "samples_per_sec": (self._samples[-1] - self._samples[0]) / elapsed,
        }
        if self._lengths.full:
            per_device["items_per_sec"] = (self._lengths[-1] - self._lengths[0]) / elapsed
        for name, rate in per_device.items():
            metrics[dev + name] = rate
            if several:
                metrics[name] = rate * self.world_size
        if len(self._flops) == self._flops.maxlen:
            # Each entry is the work since the previous update: the first one was done before the window opened.
            flops_per_sec = (sum(self._flops) - self._flops[0]) / elapsed
            if several:
                metrics["flops_per_sec"] = flops_per_sec
            device_flops_per_sec = flops_per_sec / self.world_size
            metrics[dev + "flops_per_sec"] = device_flops_per_sec
            if self.available_flops:
                metrics[dev + "mfu"] = device_flops_per_sec / self.available_flops
        return metrics

    def reset(self) -> None:
        """Forget every update."""
        for window in (self._time, self._batches, self._samples, self._lengths, self._flops):
            window.clear()


class ThroughputMonitor(Throughput):
    """:class:`Throughput` for a Fabric: its world size, its device's peak FLOP/s in its
    precision's compute dtype, and :meth:`compute_and_log` to log through ``fabric.log_dict``.

    As in Lightning, only global rank 0 records and computes: elsewhere ``update`` and
    ``reset`` do nothing and ``compute``/``compute_and_log`` return ``{}``. ``step`` counts
    the ``compute_and_log`` calls (from 0) unless a step is given.

    :param fabric: a launched Fabric.
    :param kwargs: :class:`Throughput`'s ``window_size`` and ``separator``.
    """

    def __init__(self, fabric: Fabric, **kwargs: Any) -> None:
        _check_launched(fabric)
        for name in ("available_flops", "world_size"):
            if name in kwargs:
                raise TypeError(f"ThroughputMonitor({name}=...): it is taken from the Fabric; use Throughput to choose it")
        dtype = _compute_dtype(fabric)
        available_flops = None if dtype is None else get_available_flops(fabric.device, dtype)
        super().__init__(available_flops=available_flops, world_size=fabric.world_size, **kwargs)
        self._fabric = fabric
        self._rank_zero = fabric.global_rank == 0
        self.step = -1

    def update(self, **kwargs: Any) -> None:
        if self._rank_zero:
            super().update(**kwargs)

    def compute(self) -> _THROUGHPUT_METRICS:
        return super().compute() if self._rank_zero else {}

    def reset(self) -> None:
        if self._rank_zero:
            super().reset()

    def compute_and_log(self, step: Optional[int] = None, **kwargs: Any) -> _THROUGHPUT_METRICS:
        """:meth:`compute`, then ``fabric.log_dict(metrics, step=...)``; returns the metrics.

        :param step: the step to log at; by default one more than the previous call's.
        """
        if not self._rank_zero:
            return {}
        log_dict = getattr(self._fabric, "log_dict", None)
        if not callable(log_dict):
            raise AttributeError(
                f"ThroughputMonitor.compute_and_log() logs through fabric.log_dict, which {type(self._fabric).__name__} "
                "does not have: use a weft version with loggers (Fabric(loggers=...)), or call compute() and log "
                "the metrics yourself"
            )
        self.step = (self.step + 1) if step is None else step
        metrics = self.compute(**kwargs)
        log_dict(metrics=metrics, step=self.step)
        return metrics


def measure_flops(
    model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor], loss_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
) -> int:
    """FLOPs of one call of ``forward_fn`` (and, with ``loss_fn``, of the loss and the backward
    through it), counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Runs the computation: build the model and inputs on the ``"meta"`` device to count without
    computing. ``model`` is unused (kept for Lightning's signature); ``forward_fn`` decides
    what runs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        output = forward_fn()
        if loss_fn is not None:
            loss_fn(output).backward()
    return counter.get_total_flops()


def _check_launched(fabric: Any) -> None:
    # Before launch() the launching process sees world_size processes that do not exist yet.
    if fabric.world_size > 1 and not getattr(fabric, "_launched", True) and not getattr(fabric, "_external", False):
        raise RuntimeError(
            f"ThroughputMonitor(fabric) with {fabric.world_size} processes needs them running: call fabric.launch() first"
        )


def _compute_dtype(fabric: Any) -> torch.dtype | None:
    """The dtype matmuls run in under the Fabric's precision; ``None`` when the precision does not say."""
    dtypes = fabric.precision_dtypes
    compute = getattr(dtypes, "compute", None)
    if isinstance(compute, torch.dtype):
        return compute
    if fabric.device.type == "cuda":
        rank_zero_warn(f"The precision {fabric.precision_name!r} does not declare its compute dtype: no MFU is reported")
    return None


class _MonotonicWindow(list):
    """The last ``maxlen`` values of a running total, which must strictly increase."""

    def __init__(self, name: str, maxlen: int) -> None:
        super().__init__()
        self.name = name
        self.maxlen = maxlen

    @property
    def full(self) -> bool:
        return len(self) == self.maxlen

    def check(self, value: float) -> None:
        if self and value <= self[-1]:
            raise ValueError(
                f"update({self.name}={value}): {self.name} is a running total and must increase with every call "
                f"(the previous call passed {self[-1]}); pass totals, not per-step amounts"
            )

    def append(self, value: float) -> None:
        self.check(value)
        super().append(value)
        if len(self) > self.maxlen:
            del self[0]
