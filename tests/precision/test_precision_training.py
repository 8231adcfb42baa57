"""Every precision trains the seed loop on one CPU process, with the dtypes it promises."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from weft import Fabric
from weft.records import PrecisionDtypes

sys.path.insert(0, str(Path(__file__).parent / "scripts"))  # the seed loop, shared with the subprocess scripts
from seed_loop import PRECISIONS, make_model, seed_loop  # noqa: E402

F32, F16, BF16, F64 = torch.float32, torch.float16, torch.bfloat16, torch.float64

EXPECTED_DTYPES = {
    "32-true": PrecisionDtypes(F32, F32, F32, False),
    "16-mixed": PrecisionDtypes(F32, F16, F32, True),
    "bf16-mixed": PrecisionDtypes(F32, BF16, F32, True),
    "16-true": PrecisionDtypes(F16, F16, F16, False),
    "bf16-true": PrecisionDtypes(BF16, BF16, BF16, False),
    "64-true": PrecisionDtypes(F64, F64, F64, False),
}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_seed_loop_trains_and_loss_falls(precision):
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    model, _, losses = seed_loop(fabric, epochs=3)
    assert losses[-1] < 0.6 * losses[0], losses
    assert next(model.parameters()).dtype == EXPECTED_DTYPES[precision].param


@pytest.mark.parametrize("precision", sorted(EXPECTED_DTYPES))
def test_dtypes_hook_answers_for_each_precision(precision):
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    assert fabric.precision_dtypes == EXPECTED_DTYPES[precision]
    assert fabric.hook.weft_precision_dtypes() == EXPECTED_DTYPES[precision]


@pytest.mark.parametrize(
    "alias, name", [("16", "16-mixed"), (16, "16-mixed"), ("bf16", "bf16-mixed"), ("64", "64-true"), (64, "64-true"), (32, "32-true")]
)
def test_aliases_and_ints_select_the_same_precision(alias, name):
    assert Fabric(accelerator="cpu", devices=1, precision=alias).precision_name == name


@pytest.mark.parametrize("precision, compute", [("bf16-mixed", BF16), ("16-mixed", F16)])
def test_mixed_forward_computes_in_half_and_keeps_float32_parameters(precision, compute):
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    model = fabric.setup(nn.Linear(4, 3))
    seen = {}
    model.module.register_forward_hook(lambda module, args, output: seen.update(dtype=output.dtype))
    out = model(torch.randn(2, 4))
    assert seen["dtype"] == compute  # computed in half precision ...
    assert out.dtype == F32  # ... and handed back as float32, for the loss computed outside autocast
    assert model.weight.dtype == F32
    # fabric.autocast() gives the same context for code outside the model's forward
    with fabric.autocast():
        assert (torch.randn(2, 4) @ torch.randn(4, 3)).dtype == compute
    assert (torch.randn(2, 4) @ torch.randn(4, 3)).dtype == F32


@pytest.mark.parametrize("precision, dtype, out_dtype", [("bf16-true", BF16, F32), ("16-true", F16, F32), ("64-true", F64, F64)])
def test_true_precision_converts_parameters_inputs_and_default_dtype(precision, dtype, out_dtype):
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    seen = {}

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x, scale, index):
            seen["x"], seen["scale"], seen["index"] = x.dtype, scale.dtype, index.dtype
            seen["created"] = torch.zeros(1).dtype  # tensors made in forward use the precision's dtype
            return self.lin(x) * scale

    model = fabric.setup(Probe())
    out = model(torch.randn(2, 4), scale=torch.tensor(2.0), index=torch.tensor([1]))
    assert seen == {"x": dtype, "scale": dtype, "index": torch.int64, "created": dtype}
    assert model.lin.weight.dtype == dtype
    assert out.dtype == out_dtype
    assert torch.get_default_dtype() == F32  # restored after the forward
    with fabric.autocast():
        assert torch.ones(1).dtype == dtype


@pytest.mark.parametrize("precision, dtype", [("bf16-true", BF16), ("64-true", F64), ("bf16-mixed", F32), ("16-mixed", F32)])
def test_init_module_creates_parameters_in_the_storage_dtype(precision, dtype):
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    with fabric.init_module():
        model = make_model()
    assert {p.dtype for p in model.parameters()} == {dtype}
    with fabric.init_tensor():
        assert torch.empty(2).dtype == dtype
    assert torch.get_default_dtype() == F32


def test_bf16_mixed_adds_no_step_hooks():
    """bf16-mixed needs no scaler: backward and the optimizer step run with nothing added."""
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    assert fabric._h_pre_backward is None and fabric._h_precision_step is None
    layer = nn.Linear(2, 2)
    _, optimizer = fabric.setup(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    assert optimizer._weft_step == optimizer.optimizer.step  # the user's step, called directly
