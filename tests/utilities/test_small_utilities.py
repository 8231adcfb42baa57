"""AttributeDict, move_data_to_device, is_wrapped, and the lazy `weft.utilities` namespace."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict, defaultdict, namedtuple

import pytest
import torch

import weft.utilities as utilities
from weft import Fabric
from weft.utilities import AttributeDict, is_wrapped, move_data_to_device


def test_attribute_dict_reads_writes_and_prints_like_lightnings():
    from lightning.fabric.utilities import AttributeDict as LightningAttributeDict

    state = AttributeDict(model=torch.nn.Linear(2, 2), iter_num=0)
    state.iter_num += 1
    state.lr = 0.1
    assert state["iter_num"] == 1 and state["lr"] == 0.1 and isinstance(state, dict)
    del state.lr
    assert "lr" not in state
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        state.missing
    with pytest.raises(KeyError):
        del state.missing
    for data in (dict(state), {}, {"a": 1, "a_longer_key": [1, 2]}):
        assert repr(AttributeDict(data)) == repr(LightningAttributeDict(data))


class Movable:
    """Not a tensor, but has .to (moved in place, returning nothing)."""

    def __init__(self):
        self.device = None

    def to(self, device):
        self.device = device


@dataclasses.dataclass(frozen=True)
class Frozen:
    x: torch.Tensor
    label: str = "a"


Pair = namedtuple("Pair", "a b")


def test_move_data_to_device_walks_what_lightnings_walks():
    from lightning.fabric.utilities import move_data_to_device as lightning_move

    meta = torch.device("meta")
    batch = {"x": torch.ones(2), "pair": Pair(torch.zeros(1), "text"), "list": [torch.ones(1), 3],
             "ordered": OrderedDict(t=torch.ones(1)), "default": defaultdict(list, t=torch.ones(1))}
    ours, theirs = move_data_to_device(batch, "meta"), lightning_move(batch, "meta")
    for moved in (ours, theirs):
        assert moved["x"].device == meta and moved["pair"].a.device == meta and moved["pair"].b == "text"
        assert moved["list"][0].device == meta and moved["list"][1] == 3
        assert type(moved["ordered"]) is OrderedDict and type(moved["default"]) is defaultdict
        assert moved["default"].default_factory is list and moved["default"]["t"].device == meta
    assert batch["x"].device.type == "cpu"  # the input is left as it was
    movable = Movable()
    assert move_data_to_device(movable, "meta") is movable and movable.device == meta


def test_move_data_to_device_moves_a_frozen_dataclass():
    # Lightning raises ValueError on a frozen dataclass; weft moves it.
    moved = move_data_to_device(Frozen(torch.ones(1)), torch.device("meta"))
    assert isinstance(moved, Frozen) and moved.x.device.type == "meta" and moved.label == "a"


def test_is_wrapped_recognises_what_fabric_returned():
    fabric = Fabric(accelerator="cpu", devices=1)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2)
    assert not any(is_wrapped(obj) for obj in (model, optimizer, loader, 3, None))
    fabric_model, fabric_optimizer = fabric.setup(model, optimizer)
    fabric_loader = fabric.setup_dataloaders(loader)
    assert all(is_wrapped(obj) for obj in (fabric_model, fabric_optimizer, fabric_loader))
    assert not is_wrapped(fabric_model.module)


def test_is_wrapped_sees_through_torch_compile():
    fabric = Fabric(accelerator="cpu", devices=1)
    compiled = torch.compile(fabric.setup(torch.nn.Linear(2, 2)))
    assert is_wrapped(compiled)
    assert not is_wrapped(torch.compile(torch.nn.Linear(2, 2)))


def test_lazy_namespace(python):
    assert set(utilities.__all__) >= {
        "rank_zero_only", "rank_zero_info", "rank_zero_warn", "rank_zero_debug", "AttributeDict",
        "move_data_to_device", "is_wrapped", "Throughput", "ThroughputMonitor", "measure_flops", "SpikeDetection",
    }
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        utilities.nothing
    code = (
        "import sys, json, weft.utilities as u\n"
        "before = 'torch' in sys.modules\n"
        "u.rank_zero_only, u.AttributeDict\n"
        "light = 'torch' in sys.modules\n"
        "u.Throughput\n"
        "print(json.dumps([before, light, 'torch' in sys.modules, 'lightning' in sys.modules]))\n"
    )
    assert json.loads(python(["-c", code]).stdout) == [False, False, True, False]
