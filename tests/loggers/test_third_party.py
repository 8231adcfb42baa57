"""A logger from a third-party distribution (real *.dist-info metadata) is found by name and gets
the same calls as the first-party TensorBoard logger, from a script run the way users run theirs."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from logger_helpers import SCRIPTS, install_dist_info, run, with_site

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from weft import Fabric

    fabric = Fabric(accelerator="cpu", devices=1, loggers=["tensorboard", "miniflow"])
    tensorboard, miniflow = fabric.loggers
    fabric.log("loss", torch.tensor(2.0), step=0)
    fabric.log_dict({"loss": torch.tensor(1.5), "acc": 0.25}, step=1)
    fabric.log("loss", 1.0)  # no step: each logger counts on from its last step

    import miniflow_logger
    print(json.dumps({
        "types": [type(tensorboard).__name__, type(miniflow).__name__],
        "miniflow_dir": miniflow.log_dir,
        "tensorboard_dir": tensorboard.log_dir,
        "calls": miniflow_logger.CALLS,
    }))
    # The script ends here: Fabric finalizes both loggers as the process exits.
    """
)


@pytest.fixture(scope="module")
def miniflow_site(tmp_path_factory):
    return install_dist_info(
        tmp_path_factory.mktemp("site"), "weft-miniflow", "1.0.0", {"weft.loggers": {"miniflow": "miniflow_logger:MiniFlowLogger"}},
        requires=["weft>=0.1,<0.2"], modules=[SCRIPTS / "miniflow_logger.py"],
    )


def test_found_by_name_through_its_distribution(miniflow_site, monkeypatch) -> None:
    from weft import registry

    monkeypatch.syspath_prepend(str(miniflow_site))
    record = registry.find("logger", "miniflow")
    assert (record.distribution, record.version, record.value) == ("weft-miniflow", "1.0.0", "miniflow_logger:MiniFlowLogger")
    assert "miniflow" in registry.names("loggers") and "tensorboard" in registry.names("loggers")


@pytest.mark.timeout(120)
def test_gets_the_same_calls_as_tensorboard(miniflow_site, tmp_path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = run([sys.executable, "train.py"], timeout=100, env=with_site(miniflow_site), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["types"] == ["TensorBoardLogger", "MiniFlowLogger"]
    # Fabric hands every logger Python numbers, never tensors.
    assert report["calls"] == [
        ["log_metrics", {"loss": 2.0}, 0],
        ["log_metrics", {"loss": 1.5, "acc": 0.25}, 1],
        ["log_metrics", {"loss": 1.0}, None],
    ]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / report["tensorboard_dir"]))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(0, 2.0), (1, 1.5), (2, 1.0)]
    assert [(e.step, e.value) for e in events.Scalars("acc")] == [(1, 0.25)]

    run_dir = tmp_path / report["miniflow_dir"]
    with open(run_dir / "metrics" / "loss") as f:
        assert [(line.split()[2], line.split()[1]) for line in f] == [("0", "2.0"), ("1", "1.5"), ("2", "1.0")]
    # written only by finalize, which Fabric called as the script ended
    assert (run_dir / "status").read_text() == "success"
    assert os.path.isdir(tmp_path / "logs" / "lightning_logs" / "version_0")
