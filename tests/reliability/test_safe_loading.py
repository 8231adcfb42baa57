"""Loading is safe by default: weights_only everywhere unless opted out; plugin autoload can be restricted."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import weft
from conftest import run_python
from weft import Fabric
from weft.errors import CheckpointError


class Settings:
    """A user object that only a trusted, opted-out load may unpickle."""

    def __init__(self) -> None:
        self.lr = 0.1


def test_arbitrary_objects_are_refused_unless_opted_out(tmp_path):
    fabric = Fabric(accelerator="cpu", devices=1)
    model = fabric.setup(nn.Linear(2, 2))
    torch.save({"model": model.state_dict(), "settings": Settings()}, tmp_path / "c.ckpt")
    with pytest.raises(CheckpointError, match=r"weights_only=False") as info:
        fabric.load(tmp_path / "c.ckpt", {"model": model})
    assert "c.ckpt" in str(info.value)
    rest = fabric.load(tmp_path / "c.ckpt", {"model": model}, weights_only=False)
    assert isinstance(rest["settings"], Settings)


def test_resume_state_is_weights_only_loadable(tmp_path):
    fabric = Fabric(accelerator="cpu", devices=1)
    model = nn.Linear(2, 2)
    model, optimizer = fabric.setup(model, torch.optim.Adam(model.parameters()))
    loader = fabric.setup_dataloaders(DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2, shuffle=True))
    next(iter(loader))
    state = {"model": model, "optimizer": optimizer, "loader": loader, "rng": weft.RNGState(), "step": 1}
    fabric.save(tmp_path / "r.ckpt", state)
    saved = torch.load(tmp_path / "r.ckpt", weights_only=True)  # plain torch, safe mode
    assert saved["loader"]["batches_consumed"] == 1 and "generators" in saved["loader"]
    assert set(saved["rng"]["ranks"][0]) >= {"python", "numpy", "torch"}
    fabric.load(tmp_path / "r.ckpt", state)  # and weft's default load takes it back


def test_rng_state_round_trip_restores_every_generator():
    import random

    import numpy as np

    rng = weft.RNGState()
    saved = rng.state_dict()
    before = (torch.rand(3), random.random(), np.random.rand())
    rng.load_state_dict(saved)
    after = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]


SCRIPT = """
import json, os
from weft import registry
out = {}
for label, env in (("default", {}), ("disabled", {"WEFT_DISABLE_PLUGIN_AUTOLOAD": "1"}), ("allow_ddp", {"WEFT_PLUGINS": "weft-ddp"})):
    os.environ.pop("WEFT_DISABLE_PLUGIN_AUTOLOAD", None); os.environ.pop("WEFT_PLUGINS", None)
    os.environ.update(env)
    out[label] = registry.names("strategies")
print(json.dumps(out))
"""


@pytest.mark.timeout(60)
def test_plugin_autoload_can_be_disabled_or_allowlisted():
    proc = run_python(["-c", SCRIPT], timeout=50)
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    assert names["disabled"] == ["single_device"]  # core's built-ins only
    if "ddp" in names["default"]:
        assert "ddp" in names["allow_ddp"]
    assert not any(n.startswith("fsdp") for n in names["allow_ddp"])
