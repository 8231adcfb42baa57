"""The ``single_device`` strategy: one process, one device, no communication."""

from __future__ import annotations

import contextlib

from weft import checkpoint
from weft.clipping import WholeGradientClipping
from weft.hookspecs import hookimpl


class SingleDeviceStrategy(WholeGradientClipping):
    name = "single_device"

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        return module.to(fabric.device)

    @hookimpl
    def weft_strategy_setup_optimizer(self, fabric, optimizer):
        return optimizer

    @hookimpl
    def weft_strategy_module_init_context(self, fabric, empty_init):
        stack = contextlib.ExitStack()
        stack.enter_context(fabric.device)
        if empty_init:
            # Parameters are overwritten by a checkpoint or an init function later:
            # skip the (slow) default initialisation.
            stack.enter_context(_skip_init())
        return stack

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
        return tensor.clone()

    @hookimpl
    def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
        return tensor.unsqueeze(0)

    @hookimpl
    def weft_strategy_broadcast(self, fabric, obj, src):
        return [obj]

    @hookimpl
    def weft_strategy_barrier(self, fabric, name):
        return True

    @hookimpl
    def weft_strategy_save_checkpoint(self, fabric, path, state, filter):
        checkpoint.atomic_torch_save(checkpoint.to_state_dicts(state, filter), path)
        return True

    @hookimpl
    def weft_strategy_load_checkpoint(self, fabric, path, state, strict, weights_only):
        return checkpoint.restore(checkpoint.load_file(path, weights_only=weights_only), state, strict)



def _skip_init():
    """Skip ``torch.nn.init`` calls while modules are built: their weights come from a checkpoint."""
    from torch.overrides import TorchFunctionMode

    class _SkipInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__module__", None) == "torch.nn.init":
                return kwargs["tensor"] if "tensor" in kwargs else args[0]
            return func(*args, **kwargs)

    return _SkipInit()
