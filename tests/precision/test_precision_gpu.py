"""Mixed precision on a CUDA GPU (skipped without one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from weft import Fabric
from weft.errors import ConfigurationError

sys.path.insert(0, str(Path(__file__).parent / "scripts"))  # the seed loop, shared with the subprocess scripts
from seed_loop import make_data, seed_loop  # noqa: E402

HAS_CUDA = torch.cuda.device_count() > 0
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]


def _native_bf16() -> bool:
    return HAS_CUDA and torch.cuda.is_bf16_supported(including_emulation=False)


@pytest.mark.parametrize("precision, compute", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)])
def test_seed_loop_trains_on_cuda(precision, compute):
    if compute is torch.bfloat16 and not _native_bf16():
        pytest.skip("this GPU has no native bf16")
    fabric = Fabric(accelerator="cuda", devices=1, precision=precision)
    assert fabric.precision.device_type == "cuda"
    model, optimizer, losses = seed_loop(fabric, epochs=3, max_norm=5.0)
    assert losses[-1] < 0.6 * losses[0], losses
    weight = next(model.parameters())
    assert weight.device.type == "cuda" and weight.dtype == torch.float32
    seen = {}
    model.module[0].register_forward_hook(lambda m, a, out: seen.update(dtype=out.dtype, device=out.device.type))
    out = model(torch.randn(4, 10, device=fabric.device))
    assert seen == {"dtype": compute, "device": "cuda"}
    assert out.dtype == torch.float32


def test_16_mixed_on_cuda_skips_an_overflowing_step_and_lowers_the_scale():
    fabric = Fabric(accelerator="cuda", devices=1, precision="16-mixed")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-2))
    assert type(fabric.precision.scaler) is torch.amp.GradScaler
    x, y = (t.to(fabric.device) for t in make_data(64).tensors)
    for bad in (False, True):
        before = [p.detach().clone() for p in model.parameters()]
        scale = fabric.precision.loss_scale
        optimizer.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        fabric.backward(loss * float("inf") if bad else loss)
        norm = fabric.clip_gradients(model, optimizer, max_norm=1.0, error_if_nonfinite=False)
        optimizer.step()
        unchanged = all(torch.equal(b, a) for b, a in zip(before, model.parameters()))
        assert unchanged == bad
        assert fabric.precision.loss_scale == (scale / 2 if bad else scale)
        if not bad:
            assert norm.isfinite() and norm < 1e3  # measured on unscaled gradients


@pytest.mark.skipif(_native_bf16(), reason="this GPU supports bf16")
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_bf16_on_a_gpu_without_bf16_is_rejected_at_setup(precision):
    fabric = Fabric(accelerator="cuda", devices=1, precision=precision)
    with pytest.raises(ConfigurationError, match="no native bf16 support.*'16-mixed'"):
        fabric.setup(nn.Linear(2, 2))
