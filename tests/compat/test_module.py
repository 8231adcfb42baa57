"""The model and optimizers returned by ``fabric.setup`` behave like Lightning Fabric's.

The differential tests run the module_* scenarios under both frameworks (each with a broken
variant showing its comparison catches the regression). The tests below them check, in this
process, what weft does beyond Lightning: arguments Lightning's optimizer wrapper refuses,
deleting attributes, the dtype of a converted model.
"""

import json

import pytest
import torch
from torch import nn

from harness import broken_compare, compare
from weft import Fabric
from weft.builtins.single_device import SingleDeviceStrategy
from weft.errors import MisuseError
from weft.hookspecs import hookimpl

slow = pytest.mark.slow


# ---------------------------------------------------------------------- against Lightning


@slow
def test_model_and_optimizer_on_one_process(tmp_path):
    compare("module_single", tmp_path)


@slow
@pytest.mark.parametrize(
    "breakage, symptom",
    [
        ("module_attributes_on_wrapper", "attr/module_sees_write"),
        ("optimizer_fixed_signature", "optimizer/own_step_without_closure"),
        ("module_compiled_as_is", "compile/keys"),
    ],
)
def test_one_process_broken_variants_fail(tmp_path, breakage, symptom):
    message = broken_compare("module_single", tmp_path, breakage)
    assert symptom in message


@slow
def test_methods_run_through_ddp(tmp_path):
    compare("module_ddp", tmp_path, ranks=2)


@slow
def test_methods_run_through_fsdp(tmp_path):
    # weft's FSDP against Lightning's DDP: Lightning's FSDP needs a GPU (see the scenario).
    compare("module_ddp", tmp_path, ranks=2, args=["fsdp"])


@slow
def test_methods_bypassing_ddp_broken_variant_fails(tmp_path):
    message = broken_compare("module_ddp", tmp_path, "module_methods_bypass_strategy", ranks=2)
    assert "training_step/params" in message
    # The symptoms, in the broken run's own observations: the replicas drift apart, and the
    # unmarked method runs the layers unnoticed.
    ranks = [json.loads((tmp_path / f"weft.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["training_step/params"] != ranks[1]["training_step/params"]
    assert ranks[0]["unmarked/runs_layers"] == {"raised": None}


# ---------------------------------------------------------------------- weft beyond Lightning


class _KeywordSGD(torch.optim.SGD):
    """An optimizer whose step takes keywords of its own (as fused or 8-bit optimizers do)."""

    def step(self, closure=None, *, foo=1, grad_scaler=None):
        self.seen = (foo, grad_scaler)
        return super().step(closure)


def _linear():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_step_passes_every_argument_on():
    fabric = Fabric(accelerator="cpu")
    module = _linear()
    model, optimizer = fabric.setup(module, _KeywordSGD(module.parameters(), lr=0.1))
    fabric.backward(model(torch.ones(2, 3)).sum())
    marker = object()
    optimizer.step(closure=None, foo=7, grad_scaler=marker)
    assert optimizer.optimizer.seen == (7, marker)
    assert isinstance(optimizer, torch.optim.SGD) and isinstance(optimizer, _KeywordSGD)


def test_a_strategy_that_steps_itself_refuses_arguments_it_cannot_pass():
    class SteppingStrategy(SingleDeviceStrategy):
        @hookimpl
        def weft_strategy_optimizer_step(self, fabric, optimizer):
            return optimizer.step()

    fabric = Fabric(accelerator="cpu", strategy=SteppingStrategy())
    module = _linear()
    model, optimizer = fabric.setup(module, _KeywordSGD(module.parameters(), lr=0.1))
    fabric.backward(model(torch.ones(2, 3)).sum())
    with pytest.raises(TypeError, match="foo=") as raised:
        optimizer.step(foo=2)
    assert isinstance(raised.value, MisuseError)
    calls = []
    optimizer.step(lambda: calls.append(1))  # a closure is still run
    assert calls == [1]


def test_closure_under_a_gradient_scaler_is_refused():
    # A scaler unscales the gradients before the step; a closure would compute new, scaled ones
    # after that (Lightning's GradScaler refuses it too, on a GPU; on a CPU it runs bf16 instead).
    pytest.importorskip("weft_precision")
    fabric = Fabric(accelerator="cpu", precision="16-mixed")
    module = _linear()
    model, optimizer = fabric.setup(module, torch.optim.SGD(module.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step(lambda: fabric.backward(model(torch.ones(2, 3)).float().sum()))


def test_attributes_are_deleted_where_they_are():
    fabric = Fabric(accelerator="cpu")
    module = _linear()
    model = fabric.setup(module)
    model.scale = 3.0
    assert module.scale == 3.0 and "scale" not in model.__dict__
    del model.scale  # Lightning raises AttributeError here: the name is not on its wrapper
    assert not hasattr(module, "scale")
    with pytest.raises(AttributeError):
        del model.scale


def test_dtype_is_the_parameters_dtype():
    pytest.importorskip("weft_precision")
    model = Fabric(accelerator="cpu", precision="64-true").setup(_linear())
    assert model.dtype == torch.float64  # Lightning reports torch.float32 here (the default dtype)
    model.to(torch.float32)
    assert model.dtype == torch.float32


def test_missing_step_methods_stay_missing_when_routed():
    # A compiled model routes methods through the compiled forward; a step method the user's
    # module lacks is still missing (Lightning's wrapper claims to have every step method).
    fabric = Fabric(accelerator="cpu")
    model = fabric.setup(torch.compile(_linear(), backend="eager"))
    assert not hasattr(model, "validation_step")
    assert model._forward_module is model.module  # the strategy's module, uncompiled


def test_setup_without_compiling_does_not_import_dynamo(python):
    code = (
        "import sys, torch\nfrom weft import Fabric\n"
        "model = Fabric(accelerator='cpu').setup(torch.nn.Linear(2, 2))\n"
        "model.mark_forward_method\nprint('torch._dynamo' in sys.modules)\n"
    )
    assert python(["-c", code]).stdout.strip() == "False"
