"""The ``single_device`` strategy: one process, one device, no communication."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs

from weft import checkpoint
from weft.clipping import WholeGradientClipping
from weft.devices import RootDevice
from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl
from weft.utilities.init import skip_init
from weft.records import StrategyCapabilities

#: What single_device guarantees: one process that starts no others, nothing to synchronise,
#: all the data, one checkpoint file; "auto" picks it for one process.
CAPABILITIES = StrategyCapabilities(
    multi_process=False,
    launches_processes=False,
    gradient_sync="never",
    shards_data=False,
    no_backward_sync=False,  # there is no sync to skip: the context does nothing
    auto_priority=10,
)
_NOT_AUTO = attrs.evolve(CAPABILITIES, auto_priority=None)


class SingleDeviceStrategy(WholeGradientClipping, RootDevice):
    """One process on one device.

    :param device: the device to compute on (``"cpu"``, ``"cuda:1"``, a ``torch.device``), as in
        Lightning's ``SingleDeviceStrategy(device=...)``. weft takes the device from
        ``Fabric(accelerator=..., devices=...)``; a ``device`` given here must be the one those
        select, else ``Fabric(...)`` raises saying which arguments select it. ``None``: Fabric's.
    :param accelerator: accepted for Lightning's signature; weft takes it from ``Fabric(...)``,
        so anything but ``None`` raises rather than being ignored. The same holds for
        ``checkpoint_io`` and ``precision``.

    .. versionadded:: 0.1
    """

    name = "single_device"
    # The device asked for in the constructor (a class default too: subclasses need not call __init__).
    _requested_device: Any = None

    def __init__(self, device: Any = None, accelerator: Any = None, checkpoint_io: Any = None, precision: Any = None) -> None:
        _refuse_lightning_plugins("SingleDeviceStrategy", accelerator=accelerator, checkpoint_io=checkpoint_io, precision=precision)
        if device is not None:
            import torch

            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ConfigurationError(f"SingleDeviceStrategy(device={device!r}) is not a device: {exc}") from None
        self._requested_device = device

    @hookimpl
    def weft_validate(self, fabric):
        wanted = self._requested_device
        if wanted is None:
            return
        chosen = fabric.device
        if wanted.type != chosen.type or (wanted.index is not None and wanted.index != (chosen.index or 0)):
            devices = 1 if wanted.type == "cpu" else [wanted.index or 0]
            raise ConfigurationError(
                f"SingleDeviceStrategy(device={str(wanted)!r}), but this Fabric computes on {str(chosen)!r} "
                f"(accelerator={fabric.accelerator_name!r}). Select the device through Fabric: "
                f"Fabric(accelerator={wanted.type!r}, devices={devices!r}, strategy=...)."
            )

    @hookimpl
    def weft_strategy_capabilities(self):
        if type(self) is SingleDeviceStrategy:
            return CAPABILITIES
        # A subclass keeps the guarantees but not the priority: "auto" must not silently prefer
        # some installed subclass over single_device; a subclass that should be chosen says so.
        return _NOT_AUTO

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
            stack.enter_context(skip_init())
        return stack

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
        return tensor.clone()

    @hookimpl
    def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
        # As Lightning's single-device strategy: one process adds no world dimension
        # (a multi-process strategy run with one process still returns shape (1, ...)).
        return tensor

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



def _refuse_lightning_plugins(strategy: str, **given: Any) -> None:
    """Lightning strategies take accelerator/precision/... objects; weft takes them from Fabric(...).
    Refuse them rather than drop them silently."""
    where = {
        "accelerator": "Fabric(accelerator=...)",
        "precision": "Fabric(precision=...)",
        "cluster_environment": "Fabric(plugins=[environment])",
        "checkpoint_io": "nothing in weft yet (strategies write checkpoints themselves)",
    }
    for name, value in given.items():
        if value is not None:
            raise ConfigurationError(
                f"{strategy}({name}={value!r}): weft does not take {name} from the strategy. "
                f"Leave it out and pass it to {where[name]}."
            )
