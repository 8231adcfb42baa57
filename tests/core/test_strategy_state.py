"""Strategy state in checkpoints: ``weft_strategy_state_dict`` is saved under ``"weft_strategy"`` by
``fabric.save`` and given back through ``weft_strategy_load_state_dict`` by ``fabric.load`` (also in a
fresh process); a checkpoint without it is refused under ``strict`` when the strategy has state."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

import weft
from weft.checkpoint import STRATEGY_KEY
from weft.errors import CheckpointKeyError

STRATEGY_MODULE = '''
import weft
from weft.builtins.single_device import SingleDeviceStrategy


class CountingSync(SingleDeviceStrategy):
    """single_device plus a counter of steps since the last (pretend) sync: state that belongs in checkpoints."""

    name = "counting_sync"

    def __init__(self):
        super().__init__()
        self.steps_since_sync = 0

    @weft.hookimpl
    def weft_strategy_state_dict(self):
        return {"steps_since_sync": self.steps_since_sync}

    @weft.hookimpl
    def weft_strategy_load_state_dict(self, state):
        self.steps_since_sync = state["steps_since_sync"]
'''

LOAD_SCRIPT = '''
import json, sys
import torch
import weft
from stateful_strategy import CountingSync

fabric = weft.Fabric(accelerator="cpu", strategy=CountingSync())
model = fabric.setup(torch.nn.Linear(2, 1))
remainder = fabric.load(sys.argv[1], {"model": model})
print(json.dumps({"steps": fabric.strategy.steps_since_sync, "remainder": sorted(remainder),
                  "weight": model.weight.detach().flatten().tolist()}))
'''


@pytest.fixture
def strategy_module(tmp_path, monkeypatch):
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "stateful_strategy.py").write_text(textwrap.dedent(STRATEGY_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    import stateful_strategy

    importlib.reload(stateful_strategy)
    return stateful_strategy, folder


def saved_checkpoint(module, path, steps=7):
    fabric = weft.Fabric(accelerator="cpu", strategy=module.CountingSync())
    torch.manual_seed(0)
    model = fabric.setup(nn.Linear(2, 1))
    fabric.strategy.steps_since_sync = steps
    fabric.save(path, {"model": model})
    return model


def restored_steps(module, path, strict=True):
    fabric = weft.Fabric(accelerator="cpu", strategy=module.CountingSync())
    model = fabric.setup(nn.Linear(2, 1))
    remainder = fabric.load(path, {"model": model}, strict=strict)
    assert STRATEGY_KEY not in remainder  # consumed by the strategy, not handed to the user
    return fabric.strategy.steps_since_sync


def test_save_stores_the_strategy_state_under_its_key(strategy_module, tmp_path):
    module, _ = strategy_module
    saved_checkpoint(module, tmp_path / "ckpt")
    assert torch.load(tmp_path / "ckpt", weights_only=True)[STRATEGY_KEY] == {"steps_since_sync": 7}


def test_load_gives_the_state_back(strategy_module, tmp_path):
    module, _ = strategy_module
    saved_checkpoint(module, tmp_path / "ckpt")
    assert restored_steps(module, tmp_path / "ckpt") == 7


def test_broken_load_that_skips_the_strategy_is_caught(strategy_module, tmp_path, monkeypatch):
    module, _ = strategy_module
    saved_checkpoint(module, tmp_path / "ckpt")
    # What fabric.load did before: the strategy's entry stayed in the remainder, unread.
    monkeypatch.setattr(weft.Fabric, "_load_strategy_state", lambda self, remainder, path, strict: None)
    with pytest.raises(AssertionError):
        assert restored_steps(module, tmp_path / "ckpt") == 7


@pytest.mark.slow
def test_state_round_trips_into_a_fresh_process(strategy_module, tmp_path, python):
    module, folder = strategy_module
    model = saved_checkpoint(module, tmp_path / "ckpt", steps=11)
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(LOAD_SCRIPT))
    out = python([script, tmp_path / "ckpt"], env={"PYTHONPATH": str(folder)}, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps"] == 11 and result["remainder"] == []
    assert result["weight"] == pytest.approx(model.weight.detach().flatten().tolist())


def test_a_checkpoint_without_strategy_state_is_refused_under_strict(strategy_module, tmp_path):
    module, _ = strategy_module
    plain = weft.Fabric(accelerator="cpu")  # single_device: no strategy state
    plain.save(tmp_path / "plain", {"model": plain.setup(nn.Linear(2, 1))})
    with pytest.raises(CheckpointKeyError) as info:
        restored_steps(module, tmp_path / "plain")
    message = str(info.value)
    assert STRATEGY_KEY in message and "counting_sync" in message and "strict=False" in message
    assert restored_steps(module, tmp_path / "plain", strict=False) == 0  # keeps its current state


def test_a_strategy_without_state_writes_no_entry(tmp_path):
    fabric = weft.Fabric(accelerator="cpu")
    fabric.save(tmp_path / "ckpt", {"model": fabric.setup(nn.Linear(2, 1))})
    assert STRATEGY_KEY not in torch.load(tmp_path / "ckpt", weights_only=True)
    assert STRATEGY_KEY not in fabric.load(tmp_path / "ckpt")  # and a load without state returns the file as is
