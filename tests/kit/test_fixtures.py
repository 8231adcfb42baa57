"""The fixtures weft's pytest plugin gives plugin authors, and the plugin's own footprint."""

from __future__ import annotations

import sys

import pytest
import torch

from kit_helpers import clean_env, run

from weft import registry
from weft.builtins.single_device import SingleDeviceStrategy
from weft.hookspecs import hookimpl


class EchoStrategy(SingleDeviceStrategy):
    """single_device (which has every required hook) with a visible setup_module and all_reduce."""

    name = "echo"

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        return module.to(fabric.device)

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
        return tensor.clone() * 1


class Typo:
    @hookimpl
    def weft_strategy_all_reduse(self, tensor):
        return tensor


class BadArgs:
    @hookimpl
    def weft_strategy_barrier(self, fabric, label):
        return True


def test_plugin_manager_holds_only_the_given_plugins(weft_plugin_manager) -> None:
    plugin = EchoStrategy()
    pm = weft_plugin_manager(plugin)
    assert pm.get_plugins() == {plugin}
    assert pm.hook.weft_strategy_all_reduce(fabric=None, tensor=torch.ones(2), reduce_op="sum").tolist() == [1.0, 1.0]
    assert pm.hook.weft_accelerator_device_count() is None  # nothing else registered (no accelerator)


def test_plugin_manager_rejects_unknown_hooks_and_bad_arguments(weft_plugin_manager) -> None:
    from weft.testing.managers import PluginContractError

    with pytest.raises(PluginContractError, match=r"weft_strategy_all_reduse.*no such weft hook"):
        weft_plugin_manager(Typo())
    with pytest.raises(PluginContractError, match=r"weft_strategy_barrier.*label"):
        weft_plugin_manager(BadArgs())


def test_register_is_undone_after_the_test(weft_register) -> None:
    weft_register("strategy", "echo_for_test", EchoStrategy)
    assert "echo_for_test" in registry.names("strategies")
    from weft import Fabric

    assert isinstance(Fabric(strategy="echo_for_test", accelerator="cpu", devices=1).strategy, EchoStrategy)


def test_register_left_nothing_behind() -> None:
    # Runs after the previous test in file order.
    assert "echo_for_test" not in registry.names("strategies")


def test_registered_restores_a_shadowed_registration() -> None:
    from weft.testing import registered

    with registered("strategy", "shadowed", EchoStrategy):
        with registered("strategy", "shadowed", Typo):
            assert registry.load("strategies", "shadowed") is Typo
        assert registry.load("strategies", "shadowed") is EchoStrategy
    assert "shadowed" not in registry.names("strategies")


def test_hook_recorder_sees_order_arguments_and_results(weft_hook_recorder) -> None:
    from weft import Fabric

    fabric = Fabric(strategy=EchoStrategy(), accelerator="cpu", devices=1)
    calls = weft_hook_recorder(fabric)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapped, optimizer = fabric.setup(model, optimizer)
    loss = wrapped(torch.ones(3, 2)).sum()
    fabric.backward(loss)
    optimizer.step()
    fabric.all_reduce(torch.tensor(2.0), reduce_op="sum")

    calls.assert_order(["weft_strategy_setup_environment", "weft_precision_convert_module", "weft_strategy_setup_module", "weft_strategy_all_reduce"])
    setup = calls.assert_called("weft_strategy_setup_module", module=model)
    assert setup.plugins == ["strategy"] and setup.result is model
    # Nobody implements these per-step hooks: weft calls tensor.backward()/optimizer.step() itself.
    assert not calls.called("weft_strategy_backward") and not calls.called("weft_strategy_optimizer_step")
    assert model.weight.grad is not None
    reduce = calls.calls_to("weft_strategy_all_reduce")[-1]
    assert reduce.plugins == ["strategy"]
    assert reduce.kwargs["reduce_op"] == "sum" and reduce.result.item() == 2.0
    with pytest.raises(AssertionError, match="weft_strategy_barrier was not called"):
        calls.assert_called("weft_strategy_barrier")


class CountingBackward(EchoStrategy):
    @hookimpl
    def weft_strategy_backward(self, fabric, tensor, module):
        tensor.backward()
        return True


def test_hook_recorder_sees_directly_resolved_per_step_hooks(weft_hook_recorder) -> None:
    from weft import Fabric

    fabric = Fabric(strategy=CountingBackward(), accelerator="cpu", devices=1)
    calls = weft_hook_recorder(fabric)
    wrapped = fabric.setup(torch.nn.Linear(2, 1))
    loss = wrapped(torch.ones(1, 2)).sum()
    fabric.backward(loss, model=wrapped)
    call = calls.assert_called("weft_strategy_backward", tensor=loss, module=wrapped)
    assert call.result is True and call.plugins == ["strategy"]
    calls.stop()
    fabric.backward(wrapped(torch.ones(1, 2)).sum())
    assert len(calls.calls_to("weft_strategy_backward")) == 1  # stopped: nothing more recorded


def test_hook_recorder_records_exceptions(weft_plugin_manager) -> None:
    from weft.testing import HookRecorder

    class Exploding:
        @hookimpl
        def weft_strategy_barrier(self, fabric, name):
            raise RuntimeError("boom")

    pm = weft_plugin_manager(Exploding())
    with HookRecorder(pm) as calls:
        with pytest.raises(RuntimeError):
            pm.hook.weft_strategy_barrier(fabric=None, name="x")
    assert isinstance(calls.calls[0].exception, RuntimeError) and calls.calls[0].kwargs["name"] == "x"
    assert pm.get_plugins() and all(type(p).__name__ != "HookRecorderPassthrough" for p in pm.get_plugins())


def test_pytest_plugin_is_cheap_and_inactive_without_options(tmp_path) -> None:
    code = "import sys, weft.testing.plugin; bad = [m for m in ('torch', 'weft.fabric', 'weft.testing.conformance') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    proc = run([sys.executable, "-c", code], timeout=30)
    assert proc.returncode == 0, proc.stdout
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    pass\n")
    proc = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], timeout=60, cwd=tmp_path, env=clean_env())
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout  # the user's test only
