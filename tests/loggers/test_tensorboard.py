"""TensorBoardLogger writes real event files: read back with TensorBoard's own reader."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from weft.errors import ConfigurationError, MisuseTypeError, MisuseValueError
from weft_loggers.tensorboard import TensorBoardLogger


def _events(log_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def _scalars(log_dir, tag):
    return [(e.step, e.value) for e in _events(log_dir).Scalars(tag)]


def _hparams(log_dir):
    content = _events(log_dir).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def test_scalars_tags_steps_and_values(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path, name="exp")
    logger.log_metrics({"train/loss": 2.0, "acc": torch.tensor(0.25)}, step=0)
    logger.log_metrics({"train/loss": 1.5}, step=10)
    logger.log_metrics({"train/loss": 1.25, "acc": 0.5}, step=20)
    logger.finalize("success")
    assert logger.log_dir == os.path.join(str(tmp_path), "exp", "version_0")
    events = _events(logger.log_dir)
    assert set(events.Tags()["scalars"]) == {"train/loss", "acc"}
    assert _scalars(logger.log_dir, "train/loss") == [(0, 2.0), (10, 1.5), (20, 1.25)]
    assert _scalars(logger.log_dir, "acc") == [(0, 0.25), (20, 0.5)]


def test_values_are_stored_as_32_bit_floats(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"lr": 0.1}, step=0)
    logger.finalize("success")
    [(step, value)] = _scalars(logger.log_dir, "lr")
    assert step == 0 and value == pytest.approx(0.1, rel=1e-7) and value != 0.1


def test_step_none_continues_after_the_last_step(tmp_path) -> None:
    # All at step 0 (what a SummaryWriter does with global_step=None) would collapse the curve to one point.
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 3.0})
    logger.log_metrics({"loss": 2.0})
    logger.log_metrics({"loss": 1.0}, step=7)
    logger.log_metrics({"loss": 0.5})
    logger.finalize("success")
    assert _scalars(logger.log_dir, "loss") == [(0, 3.0), (1, 2.0), (7, 1.0), (8, 0.5)]


def test_prefix_and_dict_metrics(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path, prefix="val")
    logger.log_metrics({"loss": 1.0, "lines": {"a": 1.0, "b": 2.0}}, step=3)
    logger.finalize("success")
    assert _scalars(logger.log_dir, "val-loss") == [(3, 1.0)]
    # add_scalars: one folder per line, all shown on the chart "val-lines"
    assert _scalars(os.path.join(logger.log_dir, "val-lines_a"), "val-lines") == [(3, 1.0)]
    assert _scalars(os.path.join(logger.log_dir, "val-lines_b"), "val-lines") == [(3, 2.0)]


def test_hyperparameters(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path)
    params = argparse.Namespace(lr=0.5, optimizer={"name": "adam", "betas": (0.9, 0.99)}, layers=3, extra=None, flag=True)
    logger.log_hyperparams(params)
    logger.finalize("success")
    assert _hparams(logger.log_dir) == {
        "lr": 0.5, "optimizer/name": "adam", "optimizer/betas": "(0.9, 0.99)", "layers": 3.0, "extra": "None", "flag": 1.0,
    }
    assert _scalars(logger.log_dir, "hp_metric") == [(0, -1.0)]  # Lightning's placeholder
    assert logger.read_hyperparams()["optimizer/name"] == "adam"


def test_hyperparameters_are_kept_without_any_metric(tmp_path) -> None:
    # Lightning drops them silently when there is no metric (default_hp_metric=False); weft keeps them.
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    logger.log_hyperparams({"lr": 0.5})
    logger.finalize("success")
    assert _hparams(logger.log_dir) == {"lr": 0.5}
    assert "hp_metric" not in _events(logger.log_dir).Tags().get("scalars", [])


def test_hyperparameters_once_per_run(tmp_path) -> None:
    # TensorBoard shows the first hyperparameters of a run: new values later would be ignored silently.
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.5, "layers": 2}, metrics={"best": 0.75}, step=4)
    logger.log_hyperparams({"lr": 0.5, "layers": 2}, metrics={"best": 0.5}, step=5)  # same values: metrics only
    with pytest.raises(MisuseValueError, match="differing: layers"):
        logger.log_hyperparams({"lr": 0.5, "layers": 3})
    logger.finalize("success")
    assert _hparams(logger.log_dir) == {"lr": 0.5, "layers": 2.0}
    assert _scalars(logger.log_dir, "best") == [(4, 0.75), (5, 0.5)]


def test_versions_increment_like_lightning(tmp_path) -> None:
    first = TensorBoardLogger(tmp_path)
    assert first.version == 0
    first.log_metrics({"x": 1.0}, step=0)
    first.finalize("success")
    (tmp_path / "lightning_logs" / "version_7").mkdir()
    (tmp_path / "lightning_logs" / "version_9.txt").write_text("not a run folder")
    second = TensorBoardLogger(tmp_path)
    assert second.version == 8 and second.log_dir.endswith(os.path.join("lightning_logs", "version_8"))
    named = TensorBoardLogger(tmp_path, name="", version="baseline", sub_dir="fold1")
    assert named.log_dir == os.path.join(str(tmp_path), "baseline", "fold1")
    assert TensorBoardLogger(tmp_path, version=3).log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_3")
    assert not os.path.exists(second.log_dir)  # nothing is created before the first write


def test_default_location_is_relative_to_the_working_folder(tmp_path, monkeypatch) -> None:
    # The entry point calls the class with no argument.
    monkeypatch.chdir(tmp_path)
    logger = TensorBoardLogger()
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert logger.name == "lightning_logs" and logger.root_dir == "logs"
    assert os.path.isdir(tmp_path / "logs" / "lightning_logs" / "version_0")


def test_save_flushes_and_finalize_closes(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path, flush_secs=10_000, max_queue=10_000)  # nothing reaches disk on its own
    logger.log_metrics({"x": 1.0}, step=0)
    logger.save()
    assert _scalars(logger.log_dir, "x") == [(0, 1.0)]
    logger.log_metrics({"x": 2.0}, step=1)
    logger.finalize("success")
    assert _scalars(logger.log_dir, "x") == [(0, 1.0), (1, 2.0)]
    logger.finalize("success")  # a second finalize (Fabric's, at exit) does nothing


def test_experiment_is_the_summary_writer(tmp_path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    logger = TensorBoardLogger(tmp_path)
    assert isinstance(logger.experiment, SummaryWriter) and logger.experiment is logger.experiment
    logger.experiment.add_histogram("weights", torch.arange(10.0), 0)
    logger.finalize("success")
    assert _events(logger.log_dir).Tags()["histograms"] == ["weights"]


def test_log_graph(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    logger.log_graph(model, torch.randn(2, 3))
    logger.finalize("success")
    assert _events(logger.log_dir).Graph() is not None
    with pytest.raises(MisuseValueError, match="example_input_array"):
        TensorBoardLogger(tmp_path).log_graph(model)


def test_other_ranks_write_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.5})
    logger.log_metrics({"x": 1.0}, step=0)
    logger.experiment.add_text("note", "ignored")
    logger.save()
    logger.finalize("success")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "metrics,step,error,words",
    [
        ({"x": "high"}, 0, MisuseTypeError, "metric 'x' has value 'high'"),
        ({"x": torch.ones(3)}, 0, MisuseValueError, "metric 'x' is a tensor of shape (3,)"),
        ({"x": 1.0}, 1.5, MisuseTypeError, "step=1.5"),
        ({"x": 1.0}, -2, MisuseValueError, "step=-2 is negative"),
        ([1.0], 0, MisuseValueError, "needs a dict"),
    ],
)
def test_bad_metrics_are_errors_naming_the_value(tmp_path, metrics, step, error, words) -> None:
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(error) as info:
        logger.log_metrics(metrics, step=step)
    assert words in str(info.value)
    assert not os.path.exists(logger.log_dir)  # nothing half-written


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"version": -1}, "version=-1"),
        ({"version": 1.5}, "version=1.5"),
        ({"root_dir": None}, "root_dir=None"),
        ({"log_dir": "x"}, "root_dir/name/version"),
    ],
)
def test_bad_arguments_are_errors_naming_the_value(tmp_path, kwargs, words) -> None:
    kwargs = {"root_dir": tmp_path, **kwargs}
    with pytest.raises(ConfigurationError, match=None) as info:
        TensorBoardLogger(**kwargs)
    assert words in str(info.value)


def test_hyperparams_need_a_dict(tmp_path) -> None:
    with pytest.raises(TypeError, match="argparse.Namespace"):
        TensorBoardLogger(tmp_path).log_hyperparams(["lr", 0.1])


def test_registered_by_the_distribution() -> None:
    from weft import registry

    record = registry.find("loggers", "tensorboard")
    assert record.distribution == "weft-loggers"
    assert isinstance(registry.create("loggers", "tensorboard"), TensorBoardLogger)
