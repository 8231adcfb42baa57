"""16-mixed's gradient scaler: scaling, unscaling before clipping, skipped steps, checkpoints."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from weft import Fabric
from weft.errors import MisuseError
from weft_precision import Float16MixedPrecision

sys.path.insert(0, str(Path(__file__).parent / "scripts"))  # the seed loop, shared with the subprocess scripts
from seed_loop import make_data, make_model  # noqa: E402

INIT_SCALE = 2.0**16


def setup(precision="16-mixed", lr=0.1, optimizer_cls=torch.optim.SGD, seed=0):
    fabric = Fabric(accelerator="cpu", devices=1, precision=precision)
    torch.manual_seed(seed)
    model = make_model()
    optimizer = optimizer_cls(model.parameters(), lr=lr)
    model, optimizer = fabric.setup(model, optimizer)
    x, y = make_data(64).tensors
    return fabric, model, optimizer, x, y


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_backward_scales_the_loss():
    fabric, model, optimizer, x, y = setup()
    reference = copy.deepcopy(model.module)
    loss = nn.CrossEntropyLoss()(model(x), y)
    fabric.backward(loss)
    # the same computation by hand: fp16 autocast forward, float32 loss, multiplied by the scale
    with torch.autocast("cpu", dtype=torch.float16):
        out = reference(x)
    (nn.CrossEntropyLoss()(out.float(), y) * INIT_SCALE).backward()
    for p, r in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, r.grad)
        assert p.grad.abs().max() > 1.0  # scaled: unscaled gradients here are far below 1


def test_non_finite_loss_skips_exactly_that_step_and_lowers_the_scale():
    fabric, model, optimizer, x, y = setup(optimizer_cls=torch.optim.AdamW, lr=1e-2)
    bad_step = 3
    for i in range(6):
        before, scale_before = params(model), fabric.precision.loss_scale
        optimizer.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        if i == bad_step:
            loss = loss * float("inf")
        fabric.backward(loss)
        result = optimizer.step()
        changed = any(not torch.equal(b, a) for b, a in zip(before, params(model)))
        scale_after = fabric.precision.loss_scale
        if i == bad_step:
            assert not changed, "the step with non-finite gradients must be skipped"
            assert result is None
            assert scale_after == scale_before * 0.5
        else:
            assert changed, f"step {i} should have updated the parameters"
            assert scale_after == scale_before
    # AdamW counted only the steps it took
    step_counts = {int(s["step"]) for s in optimizer.state.values()}
    assert step_counts == {5}


def test_scale_grows_after_growth_interval_finite_steps():
    fabric, model, optimizer, x, y = setup(precision=Float16MixedPrecision(init_scale=8.0, growth_interval=2))
    scales = []
    for _ in range(4):
        optimizer.zero_grad()
        fabric.backward(nn.CrossEntropyLoss()(model(x), y))
        optimizer.step()
        scales.append(fabric.precision.loss_scale)
    assert scales == [8.0, 16.0, 16.0, 32.0]


def test_clip_gradients_unscales_first_and_the_step_does_not_unscale_again():
    fabric, model, optimizer, x, y = setup(lr=1.0)
    reference = copy.deepcopy(model.module)
    max_norm = 0.05

    optimizer.zero_grad()
    fabric.backward(nn.CrossEntropyLoss()(model(x), y))
    norm = fabric.clip_gradients(model, optimizer, max_norm=max_norm)

    with torch.autocast("cpu", dtype=torch.float16):
        out = reference(x)
    (nn.CrossEntropyLoss()(out.float(), y) * INIT_SCALE).backward()
    for p in reference.parameters():
        p.grad /= INIT_SCALE
    true_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in reference.parameters()]))
    assert true_norm > max_norm, "the test needs gradients that get clipped"
    # the norm was measured on unscaled gradients, and the gradients now have the clipped norm
    torch.testing.assert_close(norm, true_norm, rtol=1e-3, atol=1e-6)
    clipped = [p.grad.clone() for p in model.parameters()]
    clipped_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in clipped]))
    assert clipped_norm <= max_norm * (1 + 1e-5)

    # a second clip in the same iteration must not unscale again
    again = fabric.clip_gradients(model, optimizer, max_norm=max_norm)
    assert again <= max_norm * (1 + 1e-5)

    before = params(model)
    optimizer.step()  # SGD, lr=1: each parameter moves by exactly its (clipped, unscaled) gradient
    for b, g, a in zip(before, clipped, params(model)):
        torch.testing.assert_close(a, b - g)


def test_clip_by_value_acts_on_unscaled_gradients():
    fabric, model, optimizer, x, y = setup()
    optimizer.zero_grad()
    fabric.backward(nn.CrossEntropyLoss()(model(x), y))
    fabric.clip_gradients(model, optimizer, clip_val=1e-3)
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert grads.abs().max() <= 1e-3
    assert (grads.abs() > 1e-4).any(), "scaled gradients clamped and then unscaled would be ~1e-8"


def test_two_optimizers_in_one_iteration_share_one_scale_update():
    fabric = Fabric(accelerator="cpu", devices=1, precision="16-mixed")
    torch.manual_seed(0)
    model = make_model()
    opt_a = torch.optim.SGD(model[0].parameters(), lr=0.1)
    opt_b = torch.optim.SGD(model[2].parameters(), lr=0.1)
    model, opt_a, opt_b = fabric.setup(model, opt_a, opt_b)
    x, y = make_data(64).tensors
    for i in range(3):
        before = params(model)
        loss = nn.CrossEntropyLoss()(model(x), y)
        fabric.backward(loss * float("inf") if i == 1 else loss)
        fabric.clip_gradients(model, opt_a, max_norm=1.0, error_if_nonfinite=False)
        opt_a.step()
        opt_b.step()
        opt_a.zero_grad()
        opt_b.zero_grad()
        changed = [not torch.equal(b, a) for b, a in zip(before, params(model))]
        assert all(changed) if i != 1 else not any(changed)
    assert fabric.precision.loss_scale == INIT_SCALE / 2  # one overflow, one halving


def test_checkpoint_round_trip_restores_the_scaler(tmp_path):
    plugin = Float16MixedPrecision(init_scale=1024.0, growth_interval=3)
    fabric, model, optimizer, x, y = setup(precision=plugin)
    for i in range(4):
        optimizer.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        fabric.backward(loss * float("nan") if i < 2 else loss)
        optimizer.step()
    fabric.save(tmp_path / "ckpt.pt", {"model": model, "optimizer": optimizer})
    saved = fabric.hook.weft_precision_state_dict()
    # two overflows halved the scale twice; two finite steps since then count towards growth
    assert (saved["scale"], saved["_growth_tracker"]) == (256.0, 2)

    other, model2, optimizer2, _, _ = setup(precision=Float16MixedPrecision(init_scale=1024.0, growth_interval=3), seed=1)
    assert other.precision.loss_scale == 1024.0
    remainder = other.load(tmp_path / "ckpt.pt", {"model": model2, "optimizer": optimizer2})
    assert remainder == {}
    assert other.precision.loss_scale == 256.0
    assert other.hook.weft_precision_state_dict() == saved
    # training continues from the restored state: one more finite step reaches the growth interval
    other.backward(nn.CrossEntropyLoss()(model2(x), y))
    optimizer2.step()
    assert other.precision.loss_scale == 512.0


def test_step_without_fabric_backward_is_refused():
    fabric, model, optimizer, x, y = setup()
    nn.CrossEntropyLoss()(model(x), y).backward()  # the classic slip: the loss was not scaled
    with pytest.raises(MisuseError, match="fabric.backward"):
        optimizer.step()
    with pytest.raises(MisuseError, match="fabric.backward"):
        fabric.clip_gradients(model, optimizer, max_norm=1.0)


def test_second_step_without_a_new_backward_is_refused():
    fabric, model, optimizer, x, y = setup()
    fabric.backward(nn.CrossEntropyLoss()(model(x), y))
    optimizer.step()
    with pytest.raises(MisuseError, match="since this optimizer's last step"):
        optimizer.step()


def test_gradient_accumulation_steps_once_per_window():
    fabric, model, optimizer, x, y = setup()
    for micro in torch.chunk(torch.arange(64), 4):
        with fabric.no_backward_sync(model, enabled=True):
            fabric.backward(nn.CrossEntropyLoss()(model(x[micro]), y[micro]) / 4)
    before = params(model)
    optimizer.step()
    assert any(not torch.equal(b, a) for b, a in zip(before, params(model)))


def test_the_precision_does_not_keep_optimizers_alive():
    import gc
    import weakref

    fabric, model, optimizer, x, y = setup()
    fabric.backward(nn.CrossEntropyLoss()(model(x), y))
    optimizer.step()
    raw = weakref.ref(optimizer.optimizer)
    del optimizer
    gc.collect()
    assert raw() is None
