"""Read a run's event files back with TensorBoard's own reader (what the TensorBoard app shows)."""

from __future__ import annotations

from typing import Any


def _accumulator(log_dir: str) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0: keep every point; the default samples scalars down to 10,000.
    accumulator = EventAccumulator(log_dir, size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the event files directly in ``log_dir``."""
    accumulator = _accumulator(log_dir)
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_hparams(log_dir: str) -> dict[str, Any]:
    """The hyperparameters in ``log_dir``'s event files (``{}`` when none).

    Like the TensorBoard app, the reader keeps the first ones written to a run.
    """
    from tensorboard.plugins.hparams import plugin_data_pb2

    raw = _accumulator(log_dir).PluginTagToContent("hparams").get("_hparams_/session_start_info")
    if raw is None:
        return {}
    start = plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info
    params: dict[str, Any] = {}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        params[key] = getattr(value, kind) if kind else None
    return params
