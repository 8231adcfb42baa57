"""The hook contract is checked in production (weft.contract), and ``None`` from a hook means
"not handled" at every call site, the per-step hooks resolved ahead of time included.

Each check has a broken variant: the contract check replaced by a no-op, or Fabric's old call
site restored by monkeypatch, under which the same assertion is shown to fail.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

import weft
from weft import Fabric, contract
from weft.builtins.single_device import SingleDeviceStrategy
from weft.errors import ConfigurationError, MisuseError, PluginContractError
from weft.hookspecs import hookimpl
from weft.loggers import Logger


def cpu_fabric(**kwargs: Any) -> Fabric:
    return Fabric(accelerator="cpu", devices=1, **kwargs)


# ---------------------------------------------------------------------- plugins breaking the contract


class MisspeltMarkedStrategy(SingleDeviceStrategy):
    @hookimpl
    def weft_strategy_all_reduse(self, fabric, tensor, reduce_op):  # never called by pluggy
        return tensor


class MisspeltPlainExtra:
    """An extra plugin: one real hook, and a misspelling without @hookimpl."""

    @hookimpl
    def weft_validate(self, fabric):
        pass

    def weft_precision_dtype(self):  # meant weft_precision_dtypes
        return None


class UnmarkedOverrideStrategy(SingleDeviceStrategy):
    def weft_strategy_barrier(self, fabric, name):  # overrides the hook, loses its marker
        raise AssertionError("never called")


class WrongArgumentStrategy(SingleDeviceStrategy):
    @hookimpl
    def weft_strategy_barrier(self, fabric, label):
        return True


class NoSaveStrategy:
    """Has every collective, but no checkpoint or clipping hooks."""

    name = "no-save"

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
        return tensor.clone()

    @hookimpl
    def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
        return tensor

    @hookimpl
    def weft_strategy_broadcast(self, fabric, obj, src):
        return [obj]

    @hookimpl
    def weft_strategy_barrier(self, fabric, name):
        return True


class UnmarkedLogger(Logger):
    name = "unmarked"
    version = 0

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def weft_logger_save(self):  # overrides the base class's hook without @hookimpl
        pass


REFUSED: list[tuple[str, Callable[[], Any], list[str]]] = [
    ("misspelt marked hook", lambda: cpu_fabric(strategy=MisspeltMarkedStrategy()),
     ["MisspeltMarkedStrategy", "weft_strategy_all_reduse", "no such weft hook", "did you mean weft_strategy_all_reduce"]),
    ("misspelt plain method", lambda: cpu_fabric(plugins=[MisspeltPlainExtra()]),
     ["MisspeltPlainExtra", "weft_precision_dtype", "did you mean weft_precision_dtypes"]),
    ("hook not marked", lambda: cpu_fabric(strategy=UnmarkedOverrideStrategy()),
     ["UnmarkedOverrideStrategy", "weft_strategy_barrier", "not marked with @weft.hookimpl"]),
    ("argument not in the spec", lambda: cpu_fabric(strategy=WrongArgumentStrategy()),
     ["WrongArgumentStrategy", "weft_strategy_barrier", "label"]),
    ("required hook missing", lambda: cpu_fabric(strategy=NoSaveStrategy()),
     ["NoSaveStrategy", "weft_strategy_save_checkpoint", "no fallback"]),
    ("logger hook not marked", lambda: cpu_fabric(loggers=UnmarkedLogger()),
     ["logger plugin", "UnmarkedLogger", "weft_logger_save", "not marked"]),
]


def assert_refused(make: Callable[[], Any], words: list[str]) -> PluginContractError:
    """``make()`` must raise a PluginContractError (a ConfigurationError) naming all ``words``."""
    try:
        make()
    except PluginContractError as exc:
        assert isinstance(exc, ConfigurationError)
        for word in words:
            assert word in str(exc), f"{word!r} not in {exc}"
        return exc
    pytest.fail("the plugin breaking the hook contract was accepted")


@pytest.mark.parametrize(("case", "make", "words"), REFUSED, ids=[case for case, _, _ in REFUSED])
def test_fabric_refuses_a_plugin_breaking_the_contract(case: str, make: Callable[[], Any], words: list[str]) -> None:
    assert_refused(make, words)


@pytest.mark.parametrize(("case", "make", "words"), REFUSED[:3] + REFUSED[4:], ids=[c for c, _, _ in REFUSED[:3] + REFUSED[4:]])
def test_without_the_check_the_same_plugins_pass_silently(monkeypatch, case, make, words) -> None:
    # Broken variant: the contract check as it was before (none). The plugin is accepted, so
    # assert_refused fails: the test above catches the missing check. (The argument case is left
    # out: pluggy itself refuses it, in its own words, check or not.)
    monkeypatch.setattr(contract, "check_plugin", lambda plugin, kind=None: None)
    with pytest.raises(pytest.fail.Exception, match="was accepted"):
        assert_refused(make, words)


def test_the_argument_error_is_pluggys_in_weft_words() -> None:
    exc = assert_refused(REFUSED[3][1], REFUSED[3][2])
    assert "may take only arguments its specification" in str(exc)
    assert exc.plugin.__class__ is WrongArgumentStrategy and "label" in exc.reason


def test_the_kit_uses_the_same_check() -> None:
    from weft.testing import managers

    assert managers.PluginContractError is weft.PluginContractError is PluginContractError
    assert managers.REQUIRED_HOOKS is contract.REQUIRED_HOOKS
    with pytest.raises(PluginContractError, match="weft_precision_dtype.*did you mean weft_precision_dtypes"):
        managers.plugin_manager(MisspeltPlainExtra())
    managers.plugin_manager(MisspeltPlainExtra(), check=False)  # tests that call broken plugins on purpose


def test_the_check_runs_once_per_plugin_class(monkeypatch) -> None:
    calls: list[type] = []
    real = contract.hook_problems
    monkeypatch.setattr(contract, "hook_problems", lambda plugin: calls.append(type(plugin)) or real(plugin))

    class FreshStrategy(SingleDeviceStrategy):
        pass

    cpu_fabric(strategy=FreshStrategy())
    cpu_fabric(strategy=FreshStrategy())
    assert calls.count(FreshStrategy) == 1


def test_first_party_plugins_keep_the_contract() -> None:
    from weft import registry

    for kind, plural in (("strategy", "strategies"), ("precision", "precisions"), ("accelerator", "accelerators")):
        for name in registry.names(plural):
            try:
                plugin = registry.create(plural, name)
            except Exception:  # noqa: BLE001 - not creatable here (no GPU...): nothing to check
                continue
            contract.check_plugin(plugin, kind)


# ---------------------------------------------------------------------- None means "not handled"


class NoneBackwardStrategy(SingleDeviceStrategy):
    """Implements the per-step hooks but declines each call by answering None."""

    @hookimpl
    def weft_strategy_backward(self, fabric, tensor, module):
        return None


class DecliningPrecisionHooks:
    """An extra plugin (it spans kinds) whose precision hooks all answer None ("not handled")."""

    @hookimpl
    def weft_accelerator_teardown(self):  # a second kind: registered as an extra, not as the precision
        pass

    @hookimpl
    def weft_precision_pre_backward(self, tensor):
        return None

    @hookimpl
    def weft_precision_convert_input(self, data):
        return None

    @hookimpl
    def weft_precision_convert_output(self, data):
        return None

    @hookimpl
    def weft_precision_forward_context(self):
        return None


def gradients_after_one_step(fabric: Fabric) -> tuple[torch.Tensor, list[Any]]:
    torch.manual_seed(0)
    model = fabric.setup(torch.nn.Linear(3, 1))
    out = model(torch.ones(2, 3))
    fabric.backward(out.sum())
    return out, [p.grad for p in model.parameters()]


def old_backward(self: Fabric, tensor: torch.Tensor, *args: Any, model: Any = None, **kwargs: Any) -> None:
    """Fabric.backward before this change: a hook's None replaced the loss / skipped backward."""
    if self._h_pre_backward is not None:
        tensor = self._h_pre_backward(tensor=tensor)
    if self._h_backward is not None:
        self._h_backward(fabric=self, tensor=tensor, module=model)
    else:
        tensor.backward(*args, **kwargs)


def assert_backward_fell_back(fabric: Fabric) -> None:
    _, grads = gradients_after_one_step(fabric)
    assert all(g is not None for g in grads), "a strategy answering None skipped backward: no gradients"


def test_a_backward_hook_answering_none_falls_back_to_autograd() -> None:
    assert_backward_fell_back(cpu_fabric(strategy=NoneBackwardStrategy()))


def test_old_backward_skipped_it(monkeypatch) -> None:
    monkeypatch.setattr(Fabric, "backward", old_backward)  # broken variant: the call site as it was
    with pytest.raises(AssertionError, match="no gradients"):
        assert_backward_fell_back(cpu_fabric(strategy=NoneBackwardStrategy()))


def test_precision_hooks_answering_none_change_nothing() -> None:
    fabric = cpu_fabric(plugins=[DecliningPrecisionHooks()])
    out, grads = gradients_after_one_step(fabric)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1)
    assert all(g is not None for g in grads)
    with fabric.autocast():
        pass


def test_old_pre_backward_lost_the_loss(monkeypatch) -> None:
    monkeypatch.setattr(Fabric, "backward", old_backward)
    fabric = cpu_fabric(plugins=[DecliningPrecisionHooks()])
    with pytest.raises(AttributeError):  # None.backward(): the loss was replaced by None
        gradients_after_one_step(fabric)


def test_none_from_one_of_two_implementations_falls_through_as_pluggy_does() -> None:
    # The extra plugin is asked first (registered last) and declines; the bf16 precision's
    # convert_output then answers, exactly as the pluggy caller would.
    fabric = cpu_fabric(precision="bf16-mixed", plugins=[DecliningPrecisionHooks()])
    model = fabric.setup(torch.nn.Linear(3, 1))
    assert model(torch.ones(2, 3)).dtype == torch.float32
    assert fabric.hook.weft_precision_convert_output(data=torch.ones(1, dtype=torch.bfloat16)).dtype == torch.float32


class NoneCollectivesStrategy(SingleDeviceStrategy):
    @hookimpl
    def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
        return None

    @hookimpl
    def weft_strategy_broadcast(self, fabric, obj, src):
        return None

    @hookimpl
    def weft_strategy_barrier(self, fabric, name):
        return None

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
        return None


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("all_gather", lambda f: f.all_gather(torch.ones(2))),
        ("broadcast", lambda f: f.broadcast(1)),
        ("barrier", lambda f: f.barrier()),
        ("all_reduce", lambda f: f.all_reduce(torch.ones(2))),
    ],
)
def test_a_collective_answering_none_raises_naming_the_hook(name: str, call: Callable[[Fabric], Any]) -> None:
    fabric = cpu_fabric(strategy=NoneCollectivesStrategy())
    fabric.launch()
    with pytest.raises(MisuseError, match=rf"weft_strategy_{name} returned None.*no fallback"):
        call(fabric)


def test_an_accelerator_without_a_device_raises() -> None:
    from weft.builtins.cpu import CPUAccelerator

    class NoDevice(CPUAccelerator):
        @hookimpl
        def weft_accelerator_get_device(self, index):
            return None

    with pytest.raises(ConfigurationError, match="weft_accelerator_get_device.*returned None"):
        Fabric(accelerator=NoDevice(), devices=1).device


def test_check_cost_is_small() -> None:
    import time

    class Timed(SingleDeviceStrategy):
        pass

    plugin = Timed()
    start = time.perf_counter()
    contract.check_plugin(plugin, "strategy")
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(1000):
        contract.check_plugin(plugin, "strategy")
    cached = (time.perf_counter() - start) / 1000
    assert cached < 20e-6, f"a cached check took {cached * 1e6:.1f} us"
    assert first < 0.05, f"the first check of a class took {first * 1e3:.1f} ms"



def old_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """_FabricModule.forward before this change: a precision hook's None replaced inputs/outputs."""
    if self._convert_in is not None:
        args, kwargs = self._convert_in(data=(args, kwargs))
    if self._context is not None:
        with self._context():
            output = self._weft_call(*args, **kwargs)
    else:
        output = self._weft_call(*args, **kwargs)
    if self._convert_out is not None:
        output = self._convert_out(data=output)
    return output


def test_old_forward_broke_on_declining_precision_hooks(monkeypatch) -> None:
    from weft.wrappers import _FabricModule

    monkeypatch.setattr(_FabricModule, "forward", old_forward)  # broken variant
    with pytest.raises(TypeError):  # `args, kwargs = None`
        test_precision_hooks_answering_none_change_nothing()


def test_old_all_gather_returned_none_silently(monkeypatch) -> None:
    from weft.utilities.apply import apply_to_tensors

    def old_all_gather(self: Fabric, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        gather = self._collective("all_gather")
        return apply_to_tensors(data, lambda t: gather(fabric=self, tensor=t, sync_grads=sync_grads))

    monkeypatch.setattr(Fabric, "all_gather", old_all_gather)  # broken variant
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        test_a_collective_answering_none_raises_naming_the_hook("all_gather", lambda f: f.all_gather(torch.ones(2)))
