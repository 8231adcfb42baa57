"""Callbacks (``Fabric(callbacks=...)``, ``fabric.call``) and loggers (``Fabric(loggers=...)``,
``fabric.log``/``log_dict``, the built-in CSVLogger), read back from the files they write."""

from __future__ import annotations

import csv
import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import weft
from weft import Fabric
from weft.loggers import CSVLogger, Logger


def read_csv(path):
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


class Recording:
    """A logger with Lightning's interface only (no weft hooks): records what it is given."""

    def __init__(self):
        self.metrics, self.hparams, self.statuses, self.saves = [], [], [], 0

    name, version = "recording", 0

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))

    def log_hyperparams(self, params):
        self.hparams.append(dict(params))

    def save(self):
        self.saves += 1

    def finalize(self, status):
        self.statuses.append(status)


# ---------------------------------------------------------------- CSVLogger


def test_csv_rows_steps_and_values_read_back(tmp_path):
    logger = CSVLogger(tmp_path, name="exp")
    fabric = Fabric(accelerator="cpu", loggers=logger)
    fabric.log("loss", torch.tensor(0.5))  # step=None: the logger counts rows
    fabric.log("loss", 0.25)
    fabric.log_dict({"loss": torch.tensor([0.125]), "acc": 1}, step=10)
    logger.finalize("success")
    header, rows = read_csv(tmp_path / "exp" / "version_0" / "metrics.csv")
    assert header == ["acc", "loss", "step"]
    assert [(r["step"], r["loss"], r["acc"]) for r in rows] == [("0", "0.5", ""), ("1", "0.25", ""), ("10", "0.125", "1")]
    assert logger.log_dir == str(tmp_path / "exp" / "version_0")
    assert logger.experiment.metrics_file_path == str(tmp_path / "exp" / "version_0" / "metrics.csv")


def test_csv_header_grows_and_file_is_rewritten(tmp_path):
    logger = CSVLogger(tmp_path, name="exp", flush_logs_every_n_steps=2)
    logger.log_metrics({"a": 1.0})
    logger.log_metrics({"a": 2.0})  # (step 1 + 1) % 2 == 0: written now
    path = Path(logger.log_dir) / "metrics.csv"
    assert read_csv(path) == (["a", "step"], [{"a": "1.0", "step": "0"}, {"a": "2.0", "step": "1"}])
    logger.log_metrics({"b": 3.0})
    logger.log_metrics({"a": 4.0, "b": 5.0})
    header, rows = read_csv(path)
    assert header == ["a", "b", "step"]
    assert rows == [
        {"a": "1.0", "b": "", "step": "0"},
        {"a": "2.0", "b": "", "step": "1"},
        {"a": "", "b": "3.0", "step": "2"},  # steps keep counting after a flush
        {"a": "4.0", "b": "5.0", "step": "3"},
    ]


def test_csv_versions_increment_and_explicit_versions(tmp_path):
    dirs = []
    for _ in range(3):
        logger = CSVLogger(tmp_path)
        logger.log_metrics({"x": 1})
        logger.save()
        dirs.append(Path(logger.log_dir).name)
    assert dirs == ["version_0", "version_1", "version_2"]
    assert CSVLogger(tmp_path).version == 3
    named = CSVLogger(tmp_path, name=None, version="run-a", prefix="train")
    named.log_metrics({"loss": 1.0}, step=4)
    named.save()
    assert read_csv(tmp_path / "run-a" / "metrics.csv") == (["step", "train-loss"], [{"step": "4", "train-loss": "1.0"}])
    # An explicit version that exists: its metrics are replaced, with a warning (as Lightning).
    again = CSVLogger(tmp_path, version=1)
    with pytest.warns(UserWarning, match="exists and is not empty"):
        again.log_metrics({"y": 2})
    again.save()
    assert read_csv(tmp_path / "lightning_logs" / "version_1" / "metrics.csv")[0] == ["step", "y"]


def test_csv_hparams_yaml_reads_back(tmp_path):
    import argparse

    yaml = pytest.importorskip("yaml")
    logger = CSVLogger(tmp_path)
    fabric = Fabric(accelerator="cpu", loggers=logger)
    params = {"lr": 1e-5, "layers": [64, 32], "name": "yes", "opt": {"betas": [0.9, 0.99], "on": True}, "none": None}
    fabric.log_hyperparams(params)
    logger.log_hyperparams(argparse.Namespace(seed=3, lr_scale=torch.tensor(2.0).item()))
    logger.save()
    assert yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text()) == {**params, "seed": 3, "lr_scale": 2.0}
    assert not (Path(logger.log_dir) / "metrics.csv").exists()


def test_csv_logger_is_the_csv_entry_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fabric = Fabric(accelerator="cpu", loggers=["csv"])
    assert isinstance(fabric.logger, CSVLogger) and fabric.loggers == [fabric.logger]
    assert fabric.logger.root_dir == "logs"
    from weft import registry

    assert "csv" in registry.names("logger")


def test_unknown_logger_name_lists_installed_and_a_close_match():
    with pytest.raises(weft.PluginNotFoundError, match=r"Unknown logger 'cvs'.*Installed loggers: .*csv.*Did you mean 'csv'"):
        Fabric(accelerator="cpu", loggers="cvs")


def test_weft_plugins_lists_loggers(capsys):
    from weft.cli import main

    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"kind": "loggers", "name": "csv", "distribution": "weft"}.items() <= next(r for r in rows if r["name"] == "csv").items()


def test_import_weft_does_not_import_loggers(python):
    out = python(["-c", "import sys, weft; from weft import Fabric; Fabric(accelerator='cpu'); print('weft.loggers' in sys.modules)"])
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- Fabric.log / log_dict


def test_lightning_interface_logger_gets_numbers_in_order():
    first, second = Recording(), Recording()
    order = []
    first.log_metrics = lambda metrics, step=None: order.append(("first", metrics, step))
    second.log_metrics = lambda metrics, step=None: order.append(("second", metrics, step))
    fabric = Fabric(accelerator="cpu", loggers=[first, second])
    assert fabric.logger is first and fabric.loggers == [first, second]
    loss = torch.tensor(2.5, requires_grad=True) * 2
    fabric.log_dict({"loss": loss, "n": torch.tensor(3), "nested": {"x": torch.tensor([1.0])}}, step=4)
    assert order == [
        ("first", {"loss": 5.0, "n": 3, "nested": {"x": 1.0}}, 4),
        ("second", {"loss": 5.0, "n": 3, "nested": {"x": 1.0}}, 4),
    ]
    assert type(order[0][1]["loss"]) is float and type(order[0][1]["n"]) is int


def test_non_scalar_tensor_is_a_clear_value_error():
    recording = Recording()
    fabric = Fabric(accelerator="cpu", loggers=recording)
    with pytest.raises(ValueError, match=r"'weights'.*shape \(2, 2\).*single numbers"):
        fabric.log("weights", torch.ones(2, 2))
    with pytest.raises(TypeError, match="dict"):
        fabric.log_dict([("a", 1)])
    assert recording.metrics == []
    # No logger at all: still checked, as in Lightning.
    with pytest.raises(ValueError):
        Fabric(accelerator="cpu").log("weights", torch.ones(3))


def test_weft_logger_subclass_and_hyperparams():
    class Mine(Logger):
        name, version = "mine", 1

        def __init__(self):
            self.rows, self.params = [], {}

        def log_metrics(self, metrics, step=None):
            self.rows.append((metrics, step))

        def log_hyperparams(self, params, *args, **kwargs):
            self.params.update(params)

    mine = Mine()
    fabric = Fabric(accelerator="cpu", loggers=mine)
    fabric.log("a", 1)
    fabric.log_hyperparams({"lr": torch.tensor(0.5)})
    assert mine.rows == [({"a": 1}, None)] and mine.params == {"lr": 0.5}


def test_failing_logger_names_itself_and_its_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    logger = CSVLogger(blocker / "logs", name="exp")
    fabric = Fabric(accelerator="cpu", loggers=[Recording(), logger])
    with pytest.raises(OSError, match=r"logger CSVLogger \(writing to .*file/logs/exp/version_0\) failed in log_metrics") as info:
        fabric.log("a", 1.0)
    assert isinstance(info.value, weft.WeftError) and isinstance(info.value.__cause__, OSError)


def test_not_a_logger_and_same_logger_twice_are_refused():
    with pytest.raises(TypeError, match=r"not a logger.*installed: .*csv"):
        Fabric(accelerator="cpu", loggers=[object()])
    recording = Recording()
    with pytest.raises(ValueError, match="same logger twice"):
        Fabric(accelerator="cpu", loggers=[recording, recording])


def test_logger_property_without_loggers_is_an_index_error():
    fabric = Fabric(accelerator="cpu")
    assert fabric.loggers == []
    with pytest.raises(IndexError, match="no logger"):
        fabric.logger
    fabric.log("a", 1.0)  # nothing to log to: nothing happens


def test_checkpoint_save_flushes_loggers(tmp_path):
    recording = Recording()
    fabric = Fabric(accelerator="cpu", loggers=recording)
    fabric.save(tmp_path / "a.pt", {"x": 1})
    assert recording.saves == 0  # nothing logged yet: nothing to write
    fabric.log("a", 1)
    fabric.save(tmp_path / "b.pt", {"x": 1})
    assert recording.saves == 1


# ---------------------------------------------------------------- callbacks


def test_callbacks_called_in_order_missing_skipped_kwargs_filtered():
    calls = []

    class A:
        def on_epoch(self, epoch, loss=None):
            calls.append(("A", epoch, loss))

    class B:
        def on_epoch(self, epoch, **kwargs):
            calls.append(("B", epoch, kwargs))

    class C:  # no on_epoch: skipped
        pass

    fabric = Fabric(accelerator="cpu", callbacks=[A(), C(), B()])
    fabric.call("on_epoch", 1, loss=0.5, extra="x")
    fabric.call("not_defined_anywhere")
    assert calls == [("A", 1, 0.5), ("B", 1, {"loss": 0.5, "extra": "x"})]


def test_single_callback_object_and_tuple():
    calls = []

    class A:
        def hook(self):
            calls.append("A")

    Fabric(accelerator="cpu", callbacks=A()).call("hook")
    Fabric(accelerator="cpu", callbacks=(A(), A())).call("hook")
    given = [A()]
    fabric = Fabric(accelerator="cpu", callbacks=given)
    fabric.call("hook")
    assert calls == ["A"] * 4 and len(given) == 1


def test_raising_callback_is_named_chained_and_keeps_its_class():
    class StopTraining(Exception):
        def __init__(self, epoch):
            super().__init__(f"stop at {epoch}")
            self.epoch = epoch

    calls = []

    class Stops:
        def on_epoch(self, epoch):
            raise StopTraining(epoch)

    class Later:
        def on_epoch(self, epoch):
            calls.append(epoch)

    fabric = Fabric(accelerator="cpu", callbacks=[Stops(), Later()])
    with pytest.raises(StopTraining, match=r"callback Stops\.on_epoch raised StopTraining: stop at 3") as info:
        fabric.call("on_epoch", epoch=3)
    assert info.value.epoch == 3 and isinstance(info.value.__cause__, StopTraining) and calls == []

    class KeyErrors:
        def on_epoch(self):
            {}["missing"]

    with pytest.raises(KeyError, match="KeyErrors.on_epoch"):
        Fabric(accelerator="cpu", callbacks=KeyErrors()).call("on_epoch")


def test_non_callable_callback_attribute_is_skipped_with_a_warning():
    class A:
        on_epoch = 3

    with pytest.warns(UserWarning, match="not callable"):
        Fabric(accelerator="cpu", callbacks=A()).call("on_epoch")


def test_setup_and_optimizer_step_callbacks():
    calls = []

    class A:
        def on_after_setup(self, fabric, module):
            calls.append(("setup", type(module).__name__))

        def on_after_optimizer_step(self, strategy, optimizer):
            calls.append(("step", type(optimizer).__name__))

    fabric = Fabric(accelerator="cpu", callbacks=A())
    model = torch.nn.Linear(2, 1)
    model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    fabric.backward(model(torch.ones(1, 2)).sum())
    optimizer.step()
    assert calls == [("setup", "_FabricModule"), ("step", "SGD")]


def test_lightning_module_is_attached():
    pl = pytest.importorskip("lightning.pytorch")
    seen = []

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch):
            loss = self.layer(batch).sum()
            self.log("loss", loss)
            self.log_dict({"a": 1.0})
            seen.append((self.logger, len(self.loggers), self.fabric, self.optimizers()))
            return loss

        def on_custom(self, value):
            seen.append(value)

    recording = Recording()
    fabric = Fabric(accelerator="cpu", loggers=recording)
    module = Module()
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    fabric.backward(model.training_step(torch.ones(1, 2)))
    fabric.call("on_custom", 7)
    assert seen[0][0] is recording and seen[0][1] == 1 and seen[0][2] is fabric and seen[0][3] is optimizer
    assert seen[1] == 7
    assert [m for m, _ in recording.metrics] == [{"loss": pytest.approx(module.layer(torch.ones(1, 2)).sum().item())}, {"a": 1.0}]


# ---------------------------------------------------------------- finalize at exit, and two ranks

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from weft import Fabric
    from weft.loggers import CSVLogger

    out, mode = sys.argv[1], sys.argv[2]

    class Status:
        def log_metrics(self, metrics, step=None):
            with open(os.path.join(out, f"status-{os.getpid()}.jsonl"), "a") as f:
                f.write(json.dumps({"metrics": metrics, "rank": int(os.environ.get("RANK", 0))}) + "\\n")

        def finalize(self, status):
            with open(os.path.join(out, f"status-{os.getpid()}.jsonl"), "a") as f:
                f.write(json.dumps({"finalize": status, "rank": int(os.environ.get("RANK", 0))}) + "\\n")

    devices = 2 if mode.startswith("ddp") else 1
    fabric = Fabric(accelerator="cpu", devices=devices, strategy="ddp" if devices == 2 else "auto",
                    loggers=[CSVLogger(out, name="exp"), Status()])
    fabric.launch()
    for step in range(3):
        fabric.log_dict({"rank": fabric.global_rank, "value": torch.tensor(step * 0.5)}, step=step)
    if mode == "raise":
        raise RuntimeError("the script failed")
    if mode == "ddp-rank1-raises":
        fabric.barrier()
        if fabric.global_rank == 1:
            raise RuntimeError("rank 1 failed")
        fabric.all_reduce(torch.ones(1))  # rank 0 waits here for rank 1, which is gone
    """
)


def statuses(folder):
    return [json.loads(line) for path in sorted(Path(folder).glob("status-*.jsonl")) for line in path.read_text().splitlines()]


def run_script(python, tmp_path, mode, check=True, timeout=120):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    return python([script, tmp_path, mode], cwd=tmp_path, check=check, timeout=timeout)


@pytest.mark.parametrize("mode", ["success", "raise"])
def test_buffered_rows_are_written_at_exit(python, tmp_path, mode):
    proc = run_script(python, tmp_path, mode, check=mode == "success")
    assert (proc.returncode != 0) == (mode == "raise")
    header, rows = read_csv(tmp_path / "exp" / "version_0" / "metrics.csv")  # fewer rows than the flush interval
    assert [(r["step"], r["value"]) for r in rows] == [("0", "0.0"), ("1", "0.5"), ("2", "1.0")]
    assert [s["finalize"] for s in statuses(tmp_path) if "finalize" in s] == ["success" if mode == "success" else "failed"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_ranks_write_from_rank_zero_only(python, tmp_path):
    run_script(python, tmp_path, "ddp", timeout=150)
    header, rows = read_csv(tmp_path / "exp" / "version_0" / "metrics.csv")
    assert [(r["rank"], r["step"]) for r in rows] == [("0", "0"), ("0", "1"), ("0", "2")]
    assert list((tmp_path / "exp").iterdir()) == [tmp_path / "exp" / "version_0"]
    seen = statuses(tmp_path)
    assert {s["rank"] for s in seen} == {0}, "only global rank 0 may call its loggers"
    assert [s["finalize"] for s in seen if "finalize" in s] == ["success"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_rank_zero_finalizes_when_another_rank_fails(python, tmp_path):
    proc = run_script(python, tmp_path, "ddp-rank1-raises", check=False, timeout=150)
    assert proc.returncode != 0 and "rank 1 failed" in proc.stdout + proc.stderr
    header, rows = read_csv(tmp_path / "exp" / "version_0" / "metrics.csv")
    assert [(r["rank"], r["step"]) for r in rows] == [("0", "0"), ("0", "1"), ("0", "2")]
    assert [s["finalize"] for s in statuses(tmp_path) if "finalize" in s] == ["failed"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_launched_function_finalizes_in_each_worker(python, tmp_path):
    script = tmp_path / "spawn.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from weft import Fabric
            from weft.loggers import CSVLogger

            def train(fabric, fail):
                fabric.log("rank", fabric.global_rank)
                if fail:
                    raise ValueError("stop")

            if __name__ == "__main__":
                fail = sys.argv[2] == "fail"
                fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn", loggers=CSVLogger(sys.argv[1], name="exp"))
                try:
                    fabric.launch(train, fail)
                except Exception as exc:
                    print("launch raised", type(exc).__name__)
            """
        )
    )
    proc = python([script, tmp_path, "ok"], cwd=tmp_path, timeout=150)
    assert read_csv(tmp_path / "exp" / "version_0" / "metrics.csv")[1] == [{"rank": "0", "step": "0"}]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["version_0"], proc.stdout


def test_sigterm_finalizes_then_ends_the_process_as_sigterm(python, tmp_path):
    code = (
        "import os, signal, time\n"
        "from weft.loggers.dispatch import finalize_on_sigterm\n"
        "finalize_on_sigterm(lambda: print('finalized', flush=True))\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(10)\n"
        "print('not reached')\n"
    )
    proc = python(["-c", code], check=False)
    assert proc.stdout.split() == ["finalized"] and proc.returncode == -15
