"""The ``ddp`` strategy: one model replica per process, gradients averaged by DistributedDataParallel."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import attrs
from torch.nn.parallel import DistributedDataParallel

from weft import checkpoint
from weft import distributed as wdist
from weft.clipping import WholeGradientClipping
from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl

_START_METHODS = ("elastic", "spawn", "fork", "forkserver")


def _check_start_method(instance: Any, attribute: Any, value: str) -> None:
    if value not in _START_METHODS:
        raise ConfigurationError(f"start_method={value!r} is not one of {', '.join(_START_METHODS)}")


def _check_timeout(instance: Any, attribute: Any, value: Any) -> None:
    if value is None or isinstance(value, datetime.timedelta):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{attribute.name}={value!r} must be a positive number of seconds or a timedelta")


_FSDP_OPTIONS = {
    "auto_wrap_policy", "activation_checkpointing_policy", "cpu_offload", "reshard_after_forward",
    "sharding_strategy", "state_dict_type",
}


# Clipping needs no communication: after DDP's all-reduce every replica holds the same whole gradients.
@attrs.define(init=False)
class DDPStrategy(wdist.CollectiveHooks, WholeGradientClipping):
    """Data parallel training: every process holds the whole model and sees its own share of the data.

    :param find_unused_parameters: let DDP tolerate parameters that get no gradient in a step (slower).
    :param static_graph: promise DDP that the set of used parameters never changes (enables optimisations).
    :param gradient_as_bucket_view: let gradients alias DDP's communication buckets (saves memory).
    :param process_group_backend: ``"gloo"``, ``"nccl"``...; default: asked from the accelerator
        (gloo on CPU, nccl on CUDA).
    :param timeout: seconds (or ``timedelta``) any collective may wait once set up, gradient
        all-reduce included; default ``WEFT_COLLECTIVE_TIMEOUT`` or 600 s.
    :param init_timeout: seconds the rendezvous may take; default ``WEFT_INIT_TIMEOUT`` or 1800 s.
    :param start_method: how ``fabric.launch()`` starts processes: ``"elastic"`` (torch's
        elastic launcher; the whole script or the function runs in each worker), or
        ``"spawn"``/``"fork"``/``"forkserver"`` (``torch.multiprocessing``, function only).
    :param ddp_kwargs: more keyword arguments for ``DistributedDataParallel``.

    .. versionadded:: 0.1
    """

    find_unused_parameters: bool = False
    static_graph: bool = False
    gradient_as_bucket_view: bool = False
    process_group_backend: str | None = None
    timeout: float | datetime.timedelta | None = attrs.field(default=None, validator=_check_timeout)
    init_timeout: float | datetime.timedelta | None = attrs.field(default=None, validator=_check_timeout)
    start_method: str = attrs.field(default="elastic", validator=_check_start_method)
    ddp_kwargs: dict[str, Any] = attrs.field(factory=dict)
    name: str = attrs.field(default="ddp", kw_only=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        accepted = [a.name for a in attrs.fields(type(self))]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            hint = (
                " These are FSDP options: use strategy='fsdp' or weft_fsdp.FSDPStrategy(...)."
                if set(unknown) & _FSDP_OPTIONS
                else " Pass DistributedDataParallel arguments through ddp_kwargs={...}."
            )
            raise ConfigurationError(
                f"DDPStrategy got unknown option(s) {', '.join(unknown)}; it accepts {', '.join(accepted)}.{hint}"
            )
        self.__attrs_init__(*args, **kwargs)

    # ------------------------------------------------------------------ processes

    @hookimpl
    def weft_strategy_launch(self, fabric, function):
        from weft import launch

        if self.start_method == "elastic":
            return launch.launch_processes(fabric, function)
        return launch.spawn_processes(fabric, function, start_method=self.start_method)

    @hookimpl
    def weft_strategy_setup_environment(self, fabric):
        wdist.init_process_group(
            fabric, backend=self.process_group_backend, timeout=self.init_timeout, collective_timeout=self.timeout
        )

    @hookimpl
    def weft_strategy_teardown(self, fabric):
        wdist.destroy_process_group()

    # ------------------------------------------------------------------ model, optimizer, data

    @hookimpl
    def weft_strategy_module_init_context(self, fabric, empty_init):
        stack = contextlib.ExitStack()
        stack.enter_context(fabric.device)
        if empty_init:
            from weft.builtins.single_device import _skip_init

            stack.enter_context(_skip_init())  # weights come from a checkpoint: skip initialisation
        return stack

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        device = fabric.device
        module = module.to(device)
        if not any(p.requires_grad for p in module.parameters()):
            return module  # nothing to synchronise (e.g. a frozen teacher): DDP would refuse it
        device_ids = [device.index] if device.type not in ("cpu", "meta") and device.index is not None else None
        return DistributedDataParallel(
            module,
            device_ids=device_ids,
            find_unused_parameters=self.find_unused_parameters,
            static_graph=self.static_graph,
            gradient_as_bucket_view=self.gradient_as_bucket_view,
            **self.ddp_kwargs,
        )

    @hookimpl
    def weft_strategy_setup_optimizer(self, fabric, optimizer):
        return optimizer

    @hookimpl
    def weft_strategy_distributed_sampler_kwargs(self, fabric):
        return {"num_replicas": fabric.world_size, "rank": fabric.global_rank}

    # ------------------------------------------------------------------ training step

    @hookimpl
    def weft_strategy_no_backward_sync(self, fabric, module, enabled):
        if enabled and isinstance(module, DistributedDataParallel):
            return module.no_sync()
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ checkpoints

    @hookimpl
    def weft_strategy_save_checkpoint(self, fabric, path, state, filter):
        # Replicas are identical: rank 0 writes alone and waits for nobody, so
        # `if fabric.is_global_zero: fabric.save(...)` works as well as every rank calling save.
        if fabric.global_rank == 0:
            checkpoint.atomic_torch_save(checkpoint.to_state_dicts(state, filter), path)
        return True

    @hookimpl
    def weft_strategy_load_checkpoint(self, fabric, path, state, strict, weights_only):
        # Every rank reads the same single file; it holds no trace of the world size that wrote it.
        return checkpoint.restore(checkpoint.load_file(path, weights_only=weights_only), state, strict)



def ddp_spawn() -> DDPStrategy:
    """``ddp`` started with ``torch.multiprocessing`` spawn, for ``fabric.launch(fn)``."""
    return DDPStrategy(start_method="spawn", name="ddp_spawn")


def ddp_fork() -> DDPStrategy:
    """``ddp`` started by forking, for ``fabric.launch(fn)`` in notebooks (CPU, or CUDA not yet initialised)."""
    return DDPStrategy(start_method="fork", name="ddp_fork")


def ddp_find_unused_parameters_true() -> DDPStrategy:
    """``ddp`` with ``find_unused_parameters=True``."""
    return DDPStrategy(find_unused_parameters=True, name="ddp_find_unused_parameters_true")
