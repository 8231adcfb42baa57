"""Strategies declare their guarantees (StrategyCapabilities) and core reads them: ``strategy="auto"``
picks by record, ``fabric.launch()``'s message names the strategies that start processes, and the
install-hint catalogue is never used to select. All in-process: no job is started."""

from __future__ import annotations

import importlib.util

import pytest

import weft
from weft import catalogue, registry, strategy_choice
from weft.builtins.single_device import SingleDeviceStrategy
from weft.capabilities import strategy_capabilities
from weft.errors import ConfigurationError
from weft.selection import _hooks_of
from weft.records import StrategyCapabilities

HAS_DDP = importlib.util.find_spec("weft_ddp") is not None
HAS_FSDP = importlib.util.find_spec("weft_fsdp") is not None


def capabilities(plugin):
    return strategy_capabilities(_hooks_of(plugin))


def implements(plugin, hook):
    return bool(getattr(_hooks_of(plugin), hook).get_hookimpls())


# ---------------------------------------------------------------------- first-party records


def test_single_device_declares_one_process_and_is_auto_for_one():
    plugin = SingleDeviceStrategy()
    caps = capabilities(plugin)
    assert caps == StrategyCapabilities(
        multi_process=False, launches_processes=False, gradient_sync="never", parameters="replicated",
        no_backward_sync=False, shards_data=False, checkpoint="file", auto_priority=10,
    )
    # The record agrees with the code: no launcher, no sampler split, no sync context.
    assert not implements(plugin, "weft_strategy_launch")
    assert not implements(plugin, "weft_strategy_distributed_sampler_kwargs")
    assert not implements(plugin, "weft_strategy_no_backward_sync")


def test_a_subclass_of_single_device_keeps_the_guarantees_but_not_the_auto_priority():
    class Mine(SingleDeviceStrategy):
        name = "mine"

    caps = capabilities(Mine())
    assert caps.multi_process is False and caps.auto_priority is None


@pytest.mark.skipif(not HAS_DDP, reason="weft-ddp not installed")
def test_ddp_declares_data_parallel_and_only_plain_ddp_is_auto():
    caps = capabilities(registry.create("strategies", "ddp"))
    assert caps == StrategyCapabilities(
        multi_process=True, launches_processes=True, gradient_sync="every_step", parameters="replicated",
        no_backward_sync=True, shards_data=True, checkpoint="file", auto_priority=10,
    )
    plugin = registry.create("strategies", "ddp")
    assert implements(plugin, "weft_strategy_launch") and implements(plugin, "weft_strategy_distributed_sampler_kwargs")
    for preset in ("ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true"):
        preset_caps = capabilities(registry.create("strategies", preset))
        assert preset_caps.auto_priority is None and preset_caps.multi_process, preset


@pytest.mark.skipif(not HAS_FSDP, reason="weft-fsdp not installed")
def test_fsdp_declares_sharding_and_its_checkpoint_layout_follows_state_dict_type():
    from weft_fsdp import FSDPStrategy

    caps = capabilities(FSDPStrategy())
    assert (caps.parameters, caps.checkpoint, caps.auto_priority, caps.gradient_sync) == ("sharded", "folder", None, "every_step")
    assert capabilities(FSDPStrategy(state_dict_type="full")).checkpoint == "file"
    assert capabilities(FSDPStrategy(sharding_strategy="NO_SHARD")).parameters == "replicated"


# ---------------------------------------------------------------------- strategy="auto"


class PreferredSingle(SingleDeviceStrategy):
    """A third-party one-process strategy that asks to be chosen over single_device."""

    name = "preferred_single"

    @weft.hookimpl
    def weft_strategy_capabilities(self):
        return StrategyCapabilities(multi_process=False, launches_processes=False, gradient_sync="never",
                                    shards_data=False, no_backward_sync=False, auto_priority=20)


class NeverAuto(SingleDeviceStrategy):
    """Declares the highest guarantees but no auto_priority: only chosen by name."""

    name = "never_auto"

    @weft.hookimpl
    def weft_strategy_capabilities(self):
        return StrategyCapabilities(multi_process=False, launches_processes=False, gradient_sync="never",
                                    shards_data=False, no_backward_sync=False, auto_priority=None)


class PreferredMulti(SingleDeviceStrategy):
    """Claims to be a multi-process strategy with a high priority (never launched in these tests)."""

    name = "preferred_multi"

    @weft.hookimpl
    def weft_strategy_capabilities(self):
        return StrategyCapabilities(multi_process=True, auto_priority=50)


@pytest.fixture
def registered():
    names = []

    def register(name, cls):
        weft.register("strategy", name, cls)
        names.append(name)

    yield register
    for name in names:
        registry.unregister("strategy", name)


def auto_strategy(devices=1):
    return type(weft.Fabric(accelerator="cpu", devices=devices).strategy)


def check_auto_follows_records(register):
    """The check: a registered strategy with a higher auto_priority wins, for one and for two processes."""
    register("preferred_single", PreferredSingle)
    register("preferred_multi", PreferredMulti)
    assert auto_strategy(1) is PreferredSingle
    assert auto_strategy(2) is PreferredMulti


def test_auto_picks_the_highest_priority_that_suits_the_world_size(registered):
    check_auto_follows_records(registered)


def test_broken_auto_that_ignores_records_is_caught(registered, monkeypatch):
    # What core did before: a name chosen by world size alone.
    monkeypatch.setattr(strategy_choice, "choose", lambda world_size: ("single_device" if world_size == 1 else "ddp", None))
    with pytest.raises(AssertionError):
        check_auto_follows_records(registered)


def test_a_strategy_without_auto_priority_is_never_picked(registered):
    registered("never_auto", NeverAuto)
    assert auto_strategy(1) is SingleDeviceStrategy
    assert weft.Fabric(accelerator="cpu", strategy="never_auto").strategy_name == "never_auto"


def test_registering_a_strategy_later_is_seen_by_the_next_fabric(registered):
    assert auto_strategy(1) is SingleDeviceStrategy  # the choice is remembered for this installed set...
    registered("preferred_single", PreferredSingle)
    assert auto_strategy(1) is PreferredSingle  # ...and made anew when the set changes


@pytest.mark.skipif(not HAS_DDP, reason="weft-ddp not installed")
def test_auto_keeps_the_first_party_choices():
    assert auto_strategy(1) is SingleDeviceStrategy
    assert weft.Fabric(accelerator="cpu", devices=2).strategy_name == "ddp"


def test_no_suitable_strategy_raises_naming_world_size_and_records(monkeypatch):
    monkeypatch.setenv("WEFT_DISABLE_PLUGIN_AUTOLOAD", "1")  # core's built-ins only: nothing multi-process
    with pytest.raises(ConfigurationError) as info:
        weft.Fabric(accelerator="cpu", devices=2)
    message = str(info.value)
    assert "2 process(es)" in message
    assert "single_device (multi_process=False, launches_processes=False, auto_priority=10)" in message
    assert "weft-ddp" in message  # the install hint, from the catalogue


def test_a_broken_strategy_does_not_break_auto_and_is_listed(registered, monkeypatch):
    def broken():
        raise RuntimeError("cannot build me")

    registered("broken_for_auto", broken)
    monkeypatch.setenv("WEFT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert auto_strategy(1) is SingleDeviceStrategy
    with pytest.raises(ConfigurationError, match="broken_for_auto \\(not considered: .*cannot build me"):
        weft.Fabric(accelerator="cpu", devices=2)


def test_equal_priorities_are_broken_by_name():
    candidates = [
        strategy_choice.Candidate("zeta", StrategyCapabilities(auto_priority=5), ""),
        strategy_choice.Candidate("alpha", StrategyCapabilities(auto_priority=5), ""),
        strategy_choice.Candidate("low", StrategyCapabilities(auto_priority=1), ""),
    ]
    assert strategy_choice.best(candidates, multi_process=True) == "alpha"
    assert strategy_choice.best(candidates, multi_process=False) is None


def test_the_catalogue_is_never_used_to_select(monkeypatch, registered):
    registered("preferred_single", PreferredSingle)
    monkeypatch.setattr(catalogue, "PUBLISHED", {})
    strategy_choice._chosen.clear()
    assert auto_strategy(1) is PreferredSingle


# ---------------------------------------------------------------------- launch() message


class Launching(SingleDeviceStrategy):
    name = "third_party_launcher"

    @weft.hookimpl
    def weft_strategy_capabilities(self):
        return StrategyCapabilities(multi_process=True, launches_processes=True)


def check_launch_message_names_launching_strategies(register):
    register("third_party_launcher", Launching)
    fabric = weft.Fabric(accelerator="cpu", devices=2, strategy="single_device")
    with pytest.raises(ConfigurationError) as info:
        fabric.launch()
    message = str(info.value)
    assert "'third_party_launcher'" in message and "'single_device'" in message.split("cannot start them")[0]
    assert "'single_device'" not in message.split("cannot start them")[1]


def test_launch_message_names_the_installed_strategies_that_start_processes(registered):
    check_launch_message_names_launching_strategies(registered)


def test_broken_launch_message_naming_ddp_is_caught(registered, monkeypatch):
    from weft import fabric as fabric_module

    monkeypatch.setattr(fabric_module, "_launching_strategies_hint", lambda: "Use strategy='ddp' (weft-ddp)")
    with pytest.raises(AssertionError):
        check_launch_message_names_launching_strategies(registered)


# ---------------------------------------------------------------------- install hints


def test_install_hints_come_from_the_catalogue():
    assert not hasattr(registry, "FIRST_PARTY")
    assert catalogue.provider("strategies", "fsdp") == "weft-fsdp"
    assert catalogue.provider("strategy classes", "DDPStrategy") == "weft-ddp"
    assert catalogue.provider("strategies", "no_such") is None
    message = registry._not_found_message("strategies", "fsdpp", None, {"single_device": []})
    assert "Did you mean 'fsdp'" in message and "pip install weft-fsdp" in message


def test_missing_strategy_class_hint_names_the_distribution(monkeypatch):
    from weft import strategies

    monkeypatch.setenv("WEFT_PLUGINS", "weft-nothing")  # every plugin distribution excluded
    message = str(strategies._missing("FSDPStrategy"))
    assert "weft-fsdp" in message and "WEFT_PLUGINS" in message


# ---------------------------------------------------------------------- several copies of a one-process strategy


class _OneProcessSampling(SingleDeviceStrategy):
    """Says it runs one process, yet splits data (as a one-device strategy might, for evaluation)."""

    name = "one_process_sampling"

    @weft.hookimpl
    def weft_strategy_distributed_sampler_kwargs(self, fabric):
        return {"num_replicas": 1, "rank": 0}


def _refusal(strategy, processes=2):
    from weft import launch

    fabric = weft.Fabric(accelerator="cpu", strategy=strategy, devices=1)
    with pytest.raises(ConfigurationError) as error:
        launch.check_strategy_runs(fabric, processes, "weft run --devices 2")
    return str(error.value)


def test_several_processes_of_a_one_process_strategy_are_refused_by_its_record():
    message = _refusal(SingleDeviceStrategy())
    assert "weft run --devices 2: strategy 'single_device' runs one process, but 2 processes" in message
    assert "each would train alone on all the data" in message
    if HAS_DDP:
        assert "'ddp'" in message  # the installed multi-process strategies are named
    # The record decides, not which hooks happen to exist.
    assert "runs one process" in _refusal(_OneProcessSampling())


def test_broken_variant_guessing_from_hooks_lets_a_one_process_strategy_run_twice():
    """The old rule (any launch or sampler hook means several processes) accepts this strategy, so
    each copy would train alone on all of the data; the record-based check above refuses it."""
    fabric = weft.Fabric(accelerator="cpu", strategy=_OneProcessSampling(), devices=1)
    hook = fabric.hook
    old_rule_accepts = bool(hook.weft_strategy_launch.get_hookimpls() or hook.weft_strategy_distributed_sampler_kwargs.get_hookimpls())
    assert old_rule_accepts
