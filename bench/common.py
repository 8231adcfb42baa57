"""Helpers shared by the runner and the workers: timing, alternation, results."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import time
from typing import Any, Callable

RESULT_PREFIX = "BENCH_RESULT "

# Optional comparison points: installed or not, never required.
ANCHORS = {"lightning": "lightning.fabric", "accelerate": "accelerate"}


def anchor_installed(name: str) -> bool:
    """Whether an optional anchor can be imported, without importing it."""
    top = ANCHORS[name].split(".")[0]
    return importlib.util.find_spec(top) is not None


def installed_anchors() -> list[str]:
    return [name for name in ANCHORS if anchor_installed(name)]


def alternate(variants: dict[str, Callable[[], float]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Call each variant ``reps`` times, interleaved (rotating the order every round) so that slow
    phases of a busy machine hit every variant alike. Each call returns its own measurement.

    :param variants: name -> a function that runs one repetition and returns its time (or rate).
    :param reps: measured rounds.
    :param warmup: unmeasured rounds first (caches, allocator, lazy imports).
    :returns: name -> the list of measurements.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(reps):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> float:
    """Relative half-width of the middle half of the samples (a robust noise figure)."""
    if len(values) < 4:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    mid = statistics.median(values)
    return (q3 - q1) / 2 / mid if mid else 0.0


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def timed_both(function: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` for one call. On a machine shared with other
    work, CPU time is far steadier than wall time: time spent preempted is not counted."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def column(samples: dict[str, list[tuple[float, ...]]], index: int) -> dict[str, list[float]]:
    """One element of tuple-valued samples (e.g. the CPU times of ``timed_both``)."""
    return {name: [value[index] for value in values] for name, values in samples.items()}


def emit(result: dict[str, Any]) -> None:
    """Hand a worker's result to the runner (one line on stdout)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None
