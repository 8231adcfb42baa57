"""The full Fabric API on one CPU process with only core installed plugins in use."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from weft import Fabric
from weft.errors import CheckpointError, ConfigurationError, MisuseError


def make_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    return TensorDataset(x, y)


def make_model():
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))


def seed_loop(fabric, epochs=3):
    """The seed article's single-device loop; returns (model, optimizer, loader, per-epoch mean losses)."""
    fabric.seed_everything(42)
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    model, optimizer = fabric.setup(model, optimizer)
    loader = fabric.setup_dataloaders(loader)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = nn.CrossEntropyLoss()(model(inputs), targets)
            fabric.backward(loss)
            optimizer.step()
            total += loss.item()
        losses.append(total / len(loader))
    return model, optimizer, loader, losses


def test_seed_loop_trains_and_loss_falls():
    fabric = Fabric(accelerator="cpu", devices=1)
    assert fabric.strategy_name == "single_device" and fabric.precision_name == "32-true"
    _, _, _, losses = seed_loop(fabric)
    assert losses[-1] < 0.6 * losses[0]


def test_matches_a_raw_torch_loop_exactly():
    fabric = Fabric(accelerator="cpu")
    model, _, _, weft_losses = seed_loop(fabric, epochs=2)
    torch.manual_seed(42)
    import random

    random.seed(42)
    raw = make_model()
    opt = torch.optim.AdamW(raw.parameters(), lr=1e-2)
    loader = DataLoader(make_data(), batch_size=32, shuffle=True)
    raw_losses = []
    for _ in range(2):
        total = 0.0
        for inputs, targets in loader:
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(raw(inputs), targets)
            loss.backward()
            opt.step()
            total += loss.item()
        raw_losses.append(total / len(loader))
    assert weft_losses == raw_losses
    for a, b in zip(model.parameters(), raw.parameters()):
        assert torch.equal(a, b)


def test_save_load_round_trip_restores_model_and_optimizer_exactly(tmp_path):
    fabric = Fabric(accelerator="cpu")
    model, optimizer, _, _ = seed_loop(fabric, epochs=1)
    path = tmp_path / "ckpt" / "state.pt"
    fabric.save(path, {"model": model, "optimizer": optimizer, "epoch": 3, "step": 17})
    saved_params = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())

    fresh = Fabric(accelerator="cpu")
    model2 = make_model()
    model2, opt2 = fresh.setup(model2, torch.optim.AdamW(model2.parameters(), lr=1e-2))
    state = {"model": model2, "optimizer": opt2, "epoch": 0, "step": 0}
    remainder = fresh.load(path, state)
    assert remainder == {}
    assert state["epoch"] == 3 and state["step"] == 17
    assert state["model"] is model2 and state["optimizer"] is opt2
    for key, value in saved_params.items():
        assert torch.equal(model2.state_dict()[key], value)
    loaded = opt2.state_dict()
    for pid, pstate in saved_opt["state"].items():
        for k, v in pstate.items():
            assert torch.equal(loaded["state"][pid][k], v)
    assert loaded["param_groups"] == saved_opt["param_groups"]
    # state_dict keys carry no wrapper prefix; the file loads with plain torch
    raw = torch.load(path, weights_only=True)
    assert set(raw["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert not list(tmp_path.joinpath("ckpt").glob(".*tmp"))  # nothing left aside


def test_load_returns_what_it_did_not_restore_and_strictness(tmp_path):
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(make_model())
    fabric.save(tmp_path / "c.pt", {"model": model, "extra": [1, 2]})
    assert fabric.load(tmp_path / "c.pt", {"model": model}) == {"extra": [1, 2]}
    with pytest.raises(CheckpointError, match="missing"):
        fabric.load(tmp_path / "c.pt", {"model": model, "missing": 0})
    assert fabric.load(tmp_path / "c.pt", {"model": model, "missing": 0}, strict=False) == {"extra": [1, 2]}
    raw = fabric.load(tmp_path / "c.pt")
    assert set(raw) == {"model", "extra"}


def test_load_raw_plain_state_dict(tmp_path):
    source = make_model()
    torch.save(source.state_dict(), tmp_path / "raw.pt")
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(make_model())
    fabric.load_raw(tmp_path / "raw.pt", model)
    for a, b in zip(model.parameters(), source.parameters()):
        assert torch.equal(a, b)


def test_wrappers_behave_like_the_originals():
    fabric = Fabric(accelerator="cpu")
    module = make_model()
    module.custom_attribute = "kept"
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    model, opt = fabric.setup(module, optimizer)
    assert isinstance(model, nn.Module) and model.custom_attribute == "kept"
    assert model.module is module and model[0] is module[0]
    assert isinstance(opt, torch.optim.AdamW) and opt.optimizer is optimizer
    assert opt.param_groups is optimizer.param_groups
    opt.param_groups[0]["lr"] = 0.5
    assert optimizer.param_groups[0]["lr"] == 0.5
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model(torch.randn(2, 10)).sum().backward()
    opt.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.25
    loader = fabric.setup_dataloaders(DataLoader(make_data(64), batch_size=16))
    assert isinstance(loader, DataLoader) and len(loader) == 4 and loader.batch_size == 16


def test_setup_dataloaders_nested_batches_and_epoch_state():
    fabric = Fabric(accelerator="cpu")
    data = [{"x": torch.tensor([float(i)]), "meta": (torch.tensor(i), "s")} for i in range(8)]
    loader = fabric.setup_dataloaders(DataLoader(data, batch_size=4))
    batches = list(loader)
    assert batches[0]["x"].shape == (4, 1) and list(batches[0]["meta"][1]) == ["s"] * 4
    assert {k: loader.state_dict()[k] for k in ("epoch", "batches_consumed")} == {"epoch": 0, "batches_consumed": 2}
    list(loader)
    assert loader.state_dict()["epoch"] == 1


def test_batches_are_moved_through_nested_containers():
    from collections import namedtuple

    from weft.utilities.apply import apply_to_tensors

    Pair = namedtuple("Pair", "a b")
    batch = {"x": [torch.ones(1), (torch.zeros(1), "label")], "p": Pair(torch.ones(1), 3)}
    out = apply_to_tensors(batch, lambda t: t.to(torch.float64))
    assert out["x"][0].dtype == torch.float64 and out["x"][1][0].dtype == torch.float64
    assert out["x"][1][1] == "label" and isinstance(out["p"], Pair) and out["p"].b == 3
    assert out["p"].a.dtype == torch.float64


def test_collectives_on_one_process():
    fabric = Fabric(accelerator="cpu")
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(fabric.all_reduce(t, reduce_op="sum"), t)
    assert fabric.all_reduce(3.0).item() == 3.0
    assert fabric.all_gather(t) is t  # one process: no world dimension, as in Lightning
    assert fabric.all_gather({"a": t})["a"].shape == (2,)
    assert fabric.broadcast({"k": 1}) == {"k": 1} and fabric.broadcast(None) is None
    fabric.barrier()
    with pytest.raises(ValueError, match="reduce_op"):
        fabric.all_reduce(t, reduce_op="median")
    with pytest.raises(ConfigurationError, match="src"):
        fabric.broadcast(1, src=3)


def test_clip_gradients_by_norm_and_value():
    fabric = Fabric(accelerator="cpu")
    module = make_model()
    model, opt = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    (model(torch.randn(16, 10)) * 100).sum().backward()
    norm = fabric.clip_gradients(model, opt, max_norm=1.0)
    assert norm > 1.0
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))
    assert total <= 1.0 + 1e-5
    fabric.clip_gradients(model, opt, clip_val=0.01)
    assert max(p.grad.abs().max() for p in module.parameters()) <= 0.01
    with pytest.raises(ConfigurationError):
        fabric.clip_gradients(model, opt)
    with pytest.raises(ConfigurationError):
        fabric.clip_gradients(model, opt, clip_val=1, max_norm=1)


def test_launch_runs_function_and_returns_result():
    fabric = Fabric(accelerator="cpu")
    assert fabric.launch(lambda f, x: (f.global_rank, f.world_size, x), 7) == (0, 1, 7)
    assert fabric.launch() is None  # again: nothing to do, as in Lightning


def test_small_conveniences(capsys):
    fabric = Fabric(accelerator="cpu")
    fabric.print("hello", 1)
    assert capsys.readouterr().out == "hello 1\n"
    assert (fabric.global_rank, fabric.local_rank, fabric.node_rank, fabric.world_size) == (0, 0, 0, 1)
    assert fabric.is_global_zero and fabric.device == torch.device("cpu")
    with fabric.rank_zero_first():
        pass
    with fabric.init_module():
        layer = nn.Linear(2, 2)
    assert layer.weight.device.type == "cpu"
    with fabric.init_module(empty_init=True):
        empty = nn.Linear(1000, 1000)
    assert empty.weight.shape == (1000, 1000)
    with fabric.init_tensor():
        assert torch.zeros(1).dtype == torch.float32
    assert fabric.to_device({"a": torch.zeros(1)})["a"].device.type == "cpu"
    with fabric.autocast():
        pass
    a = fabric.seed_everything(5)
    x1 = torch.rand(1)
    fabric.seed_everything(5)
    assert a == 5 and torch.equal(x1, torch.rand(1))


def test_no_backward_sync_single_device_is_a_no_op():
    fabric = Fabric(accelerator="cpu")
    module = make_model()
    model, _ = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    with fabric.no_backward_sync(model):
        fabric.backward(model(torch.randn(4, 10)).sum())
    assert all(p.grad is not None for p in module.parameters())


def test_misuse_gets_clear_errors():
    fabric = Fabric(accelerator="cpu")
    module = make_model()
    model = fabric.setup(module)
    with pytest.raises(MisuseError, match="already set up"):
        fabric.setup(model)
    with pytest.raises(MisuseError, match="nn.Module"):
        fabric.setup("not a module")
    with pytest.raises(MisuseError, match="Optimizer"):
        fabric.setup(make_model(), "sgd")
    with pytest.raises(MisuseError, match="model returned by fabric.setup"):
        fabric.no_backward_sync(module)
    with pytest.raises(MisuseError, match="DataLoader"):
        fabric.setup_dataloaders([1, 2, 3])
    with pytest.raises(MisuseError, match="dict"):
        fabric.save("x.pt", [model])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"devices": 0}, "devices=0"),
        ({"devices": -2}, "devices=-2"),
        ({"devices": 1.5}, "devices=1.5"),
        ({"devices": "two"}, "devices='two'"),
        ({"num_nodes": 0}, "num_nodes=0"),
        ({"num_nodes": "2"}, "num_nodes='2'"),
        ({"precision": 3.5}, "precision=3.5"),
        ({"precision": "33-true"}, "'33-true'"),
        ({"strategy": 5}, "strategy=5"),
        ({"accelerator": None}, "accelerator=None"),
        ({"accelerator": "tpu"}, "'tpu'"),
        ({"devices": [0, 0]}, "twice"),
    ],
)
def test_bad_constructor_arguments(kwargs, fragment):
    with pytest.raises(ConfigurationError) as info:
        Fabric(**{"accelerator": "cpu", **kwargs})
    assert fragment in str(info.value)


def test_num_nodes_without_a_launcher_says_what_to_do():
    fabric = Fabric(accelerator="cpu", num_nodes=2, strategy="single_device")
    with pytest.raises(ConfigurationError, match="weft run --num-nodes 2"):
        fabric.launch()
