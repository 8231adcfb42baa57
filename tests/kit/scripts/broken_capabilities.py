"""Strategies that run to the end without an error but break what they declare or what a
hook promises: only the conformance kit's checks can tell. Installed for tests through a
*.dist-info on sys.path, beside local_sgd.py."""

import torch

from local_sgd import LocalSGDStrategy
from weft.builtins.single_device import SingleDeviceStrategy
from weft.hookspecs import hookimpl
from weft.records import StrategyCapabilities


class ManyDefectsStrategy(LocalSGDStrategy):
    """Local SGD (sync_every=2 declared) with six independent defects, one kit job for all:
    it never averages, its barrier does not wait, clipping by value does nothing, clipping by
    norm measures without clipping, it declares shards_data=True but gives no sampler, and it
    ignores empty_init.

    Not a defect: it starts no processes itself (``launches_processes=False``), so the kit
    starts its jobs with ``weft run``."""

    name = "broken_many"

    def __init__(self) -> None:
        super().__init__(sync_every=2)

    @hookimpl
    def weft_strategy_capabilities(self):
        return StrategyCapabilities(gradient_sync="periodic", sync_every=2, no_backward_sync=False, launches_processes=False)

    @hookimpl
    def weft_strategy_launch(self, fabric, function):
        return None  # `weft run` or torchrun starts the processes

    @hookimpl
    def weft_strategy_optimizer_step(self, fabric, optimizer):
        return optimizer.step()  # counts nothing, averages nothing

    @hookimpl
    def weft_strategy_barrier(self, fabric, name):
        return True  # returns at once

    @hookimpl
    def weft_strategy_clip_gradients_value(self, fabric, module, optimizer, clip_val):
        return True  # claims to have clipped

    @hookimpl
    def weft_strategy_clip_gradients_norm(self, fabric, module, optimizer, max_norm, norm_type, error_if_nonfinite):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads, norm_type=norm_type)  # the right norm, nothing clipped

    @hookimpl
    def weft_strategy_distributed_sampler_kwargs(self, fabric):
        return None  # every rank reads all the data, though shards_data=True (the default) is declared

    @hookimpl
    def weft_strategy_module_init_context(self, fabric, empty_init):
        return fabric.device  # initialises normally even when asked not to


class WrongDtypeStrategy(SingleDeviceStrategy):
    """Moves the module to the device but also changes its dtype to float64."""

    name = "broken_dtype"

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        return module.to(fabric.device, torch.float64)


class SlightlyOffStrategy(SingleDeviceStrategy):
    """Scales every gradient by 1.001 in backward: 0.1 % off, which the old default tolerance (5 %) let pass."""

    name = "broken_slightly_off"

    @hookimpl
    def weft_strategy_backward(self, fabric, tensor, module):
        (tensor * 1.001).backward()
        return True
