"""The registry through real distribution metadata: a *.dist-info with entry_points.txt on sys.path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import weft
from weft import registry
from weft.errors import ConfigurationError, PluginConflictError, PluginLoadError, PluginNotFoundError

PLUGIN_MODULE = '''
from weft import hookimpl
from weft.builtins.single_device import SingleDeviceStrategy


class CountingStrategy(SingleDeviceStrategy):
    """single_device, counting the backward passes it ran (proves the plugin's hooks are called)."""

    name = "{name}"

    def __init__(self):
        self.backward_calls = 0

    @hookimpl
    def weft_strategy_backward(self, fabric, tensor, module):
        self.backward_calls += 1
        tensor.backward()
        return True
'''


def make_distribution(root: Path, dist: str, module: str, entry_points: dict[str, dict[str, str]], requires: str = "weft>=0.1"):
    """Write an importable module plus its *.dist-info (METADATA, entry_points.txt) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\nRequires-Dist: {requires}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    root = tmp_path / "site"
    make_distribution(root, "weft-counting", "weft_counting", {"weft.strategies": {"counting": "weft_counting:CountingStrategy"}})
    (root / "weft_counting.py").write_text(PLUGIN_MODULE.format(name="counting"))
    monkeypatch.syspath_prepend(str(root))
    return root


def _train(fabric, steps=3):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    model, opt = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in range(steps):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        fabric.backward(loss)
        opt.step()
        opt.zero_grad()


def test_entry_point_from_dist_info_is_used_by_fabric(plugin_dir):
    assert "counting" in registry.names("strategies")
    fabric = weft.Fabric(accelerator="cpu", strategy="counting")
    assert type(fabric.strategy).__name__ == "CountingStrategy"
    _train(fabric)
    assert fabric.strategy.backward_calls == 3
    record = registry.find("strategies", "counting")
    assert (record.distribution, record.version) == ("weft-counting", "1.2.3")


def test_user_registration_without_packaging():
    from weft.builtins.single_device import SingleDeviceStrategy

    class Mine(SingleDeviceStrategy):
        name = "mine"

    weft.register("strategy", "mine", Mine)
    try:
        assert isinstance(weft.Fabric(accelerator="cpu", strategy="mine").strategy, Mine)
    finally:
        registry.unregister("strategy", "mine")
    with pytest.raises(PluginNotFoundError):
        weft.Fabric(accelerator="cpu", strategy="mine")


def test_two_distributions_claiming_one_name_is_an_error_naming_both(tmp_path, monkeypatch):
    for dist, mod in (("weft-alpha", "weft_alpha"), ("weft-beta", "weft_beta")):
        root = make_distribution(tmp_path / dist, dist, mod, {"weft.strategies": {"dup": f"{mod}:CountingStrategy"}})
        (root / f"{mod}.py").write_text(PLUGIN_MODULE.format(name="dup"))
        monkeypatch.syspath_prepend(str(root))
    with pytest.raises(PluginConflictError) as info:
        weft.Fabric(accelerator="cpu", strategy="dup")
    message = str(info.value)
    assert "weft-alpha" in message and "weft-beta" in message and "dup" in message
    # The explicit override: a name qualified with its distribution.
    fabric = weft.Fabric(accelerator="cpu", strategy="weft-beta:dup")
    assert type(fabric.strategy).__module__ == "weft_beta"


def test_broken_plugin_reports_entry_point_distribution_and_error_while_others_work(tmp_path, monkeypatch):
    root = make_distribution(
        tmp_path / "broken", "weft-broken", "weft_broken", {"weft.strategies": {"broken": "weft_broken:Strategy"}}
    )
    (root / "weft_broken.py").write_text("import not_a_real_module_xyz\n")
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(PluginLoadError) as info:
        weft.Fabric(accelerator="cpu", strategy="broken")
    message = str(info.value)
    for part in ("broken = weft_broken:Strategy", "weft-broken", "1.2.3", "ModuleNotFoundError", "not_a_real_module_xyz"):
        assert part in message
    assert isinstance(info.value, ImportError)
    assert weft.Fabric(accelerator="cpu", strategy="single_device").strategy_name == "single_device"


def test_unknown_name_lists_installed_and_suggests_close_match():
    with pytest.raises(PluginNotFoundError) as info:
        weft.Fabric(accelerator="cpu", strategy="singel_device")
    message = str(info.value)
    assert "single_device" in message and "Did you mean 'single_device'" in message
    assert isinstance(info.value, ValueError)


def test_missing_first_party_name_says_which_distribution_to_install():
    available = {"single_device": []}
    message = registry._not_found_message("strategies", "fsdp", None, available)
    assert "pip install weft-fsdp" in message and "single_device" in message
    message = registry._not_found_message("strategies", "fsdpp", None, available)
    assert "Did you mean 'fsdp'" in message and "pip install weft-fsdp" in message


def _run_listing(python, root, env):
    code = "import json, weft.registry as r; print(json.dumps(r.names('strategies')))"
    env = {"PYTHONPATH": str(root), **env}
    return json.loads(python(["-c", code], env=env).stdout)


def test_allowlist_and_autoload_switches_are_read_in_each_process(plugin_dir, python):
    assert "counting" in _run_listing(python, plugin_dir, {})
    only = _run_listing(python, plugin_dir, {"WEFT_PLUGINS": "weft-counting"})
    assert "counting" in only and "single_device" in only  # core built-ins always stay
    assert "ddp" not in only
    assert "counting" not in _run_listing(python, plugin_dir, {"WEFT_PLUGINS": "weft-other"})
    none = _run_listing(python, plugin_dir, {"WEFT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert none == ["single_device"]


def test_disabled_autoload_still_accepts_explicit_plugin_objects(plugin_dir, python):
    code = textwrap.dedent(
        """
        import weft
        from weft_counting import CountingStrategy
        try:
            weft.Fabric(accelerator="cpu", strategy="counting")
        except weft.PluginNotFoundError as exc:
            print("refused:", "counting" in str(exc))
        f = weft.Fabric(accelerator="cpu", strategy=CountingStrategy())
        print("explicit:", f.strategy_name)
        """
    )
    out = python(["-c", code], env={"PYTHONPATH": str(plugin_dir), "WEFT_DISABLE_PLUGIN_AUTOLOAD": "1"}).stdout
    assert "refused: True" in out and "explicit: counting" in out


def test_incompatible_core_range_is_reported_at_selection(tmp_path, monkeypatch):
    root = make_distribution(
        tmp_path / "old", "weft-old", "weft_old", {"weft.strategies": {"old": "weft_old:CountingStrategy"}}, requires="weft<0.1"
    )
    (root / "weft_old.py").write_text(PLUGIN_MODULE.format(name="old"))
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(ConfigurationError) as info:
        weft.Fabric(accelerator="cpu", strategy="old")
    assert "weft-old" in str(info.value) and "weft<0.1" in str(info.value)


def test_listing_does_not_import_plugins(plugin_dir):
    import sys

    sys.modules.pop("weft_counting", None)
    registry.records("strategies")
    assert "weft_counting" not in sys.modules


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="Unknown plugin kind"):
        weft.register("optimizer", "x", object)
