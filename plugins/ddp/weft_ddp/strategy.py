"""The ``ddp`` strategy: one model replica per process, gradients averaged by DistributedDataParallel."""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from typing import Any

import attrs
from torch.nn.parallel import DistributedDataParallel

from weft import checkpoint
from weft import distributed as wdist
from weft.clipping import WholeGradientClipping
from weft.errors import ConfigurationError, ConfigurationTypeError
from weft.devices import RootDevice  # strategy.root_device, as Lightning's
from weft.hookspecs import hookimpl

# "popen" is Lightning's name for re-running the script in every process: weft's elastic launcher.
_START_METHODS = ("elastic", "popen", "spawn", "fork", "forkserver")


def _check_start_method(instance: Any, attribute: Any, value: str) -> None:
    if value not in _START_METHODS:
        raise ConfigurationError(f"start_method={value!r} is not one of {', '.join(_START_METHODS)}")


def _check_timeout(instance: Any, attribute: Any, value: Any) -> None:
    # Checked here, not at setup: a bad value should fail at DDPStrategy(...), before processes start.
    if value is None:
        return
    try:
        wdist.collective_timeout(value, name=attribute.name)
    except ConfigurationError as exc:
        raise ConfigurationError(f"DDPStrategy: {exc}") from None


_FSDP_OPTIONS = {
    "auto_wrap_policy", "activation_checkpointing_policy", "cpu_offload", "reshard_after_forward",
    "sharding_strategy", "state_dict_type",
}
# DistributedDataParallel arguments weft sets itself, per process.
_SET_BY_WEFT = {"module", "device_ids"}
# Where Lightning's strategy-level plugins go in weft.
_LIGHTNING_PLUGINS = {
    "accelerator": "Fabric(accelerator=...)",
    "precision": "Fabric(precision=...)",
    "cluster_environment": "Fabric(plugins=[environment])",
    "checkpoint_io": "nothing in weft yet (the strategy writes checkpoints itself)",
}


def _ddp_arguments() -> set[str]:
    """The keyword arguments DistributedDataParallel accepts."""
    return set(inspect.signature(DistributedDataParallel.__init__).parameters) - {"self", "args", "kwargs"}


# Clipping needs no communication: after DDP's all-reduce every replica holds the same whole gradients.
@attrs.define(init=False)
class DDPStrategy(wdist.CollectiveHooks, WholeGradientClipping, RootDevice):
    """Data parallel training: every process holds the whole model and sees its own share of the data.

    Takes Lightning's ``DDPStrategy`` arguments, in Lightning's positional order
    (``accelerator, parallel_devices, cluster_environment, checkpoint_io, precision,
    process_group_backend, timeout, start_method``), plus weft's own as keywords.

    :param parallel_devices: as Lightning's: the devices of this node's processes. weft takes them
        from ``Fabric(accelerator=..., devices=...)``; given here they must agree, else
        ``Fabric(...)`` raises saying what to pass.
    :param process_group_backend: ``"gloo"``, ``"nccl"``...; default: asked from the accelerator
        (gloo on CPU, nccl on CUDA).
    :param timeout: seconds (or ``timedelta``) any collective may wait once set up, gradient
        all-reduce included; default ``WEFT_COLLECTIVE_TIMEOUT`` or 600 s. Like Lightning's, it
        also bounds the rendezvous when ``init_timeout`` is not given.
    :param start_method: how ``fabric.launch()`` starts processes: ``"elastic"`` (alias
        ``"popen"``, Lightning's name: torch's elastic launcher; the whole script or the function
        runs in each worker), or ``"spawn"``/``"fork"``/``"forkserver"`` (``torch.multiprocessing``,
        function only).
    :param find_unused_parameters: let DDP tolerate parameters that get no gradient in a step (slower).
    :param static_graph: promise DDP that the set of used parameters never changes (enables optimisations).
    :param gradient_as_bucket_view: let gradients alias DDP's communication buckets (saves memory).
    :param init_timeout: seconds the rendezvous may take; default ``timeout`` if given, else
        ``WEFT_INIT_TIMEOUT`` or 1800 s.
    :param ddp_kwargs: more keyword arguments for ``DistributedDataParallel``.
    :param kwargs: any other ``DistributedDataParallel`` argument, as Lightning takes them
        (``process_group=``, ``broadcast_buffers=``, ``bucket_cap_mb=``...); merged into
        ``ddp_kwargs``. ``process_group`` makes DDP synchronise gradients over that group only;
        collectives (``fabric.all_reduce``...) and the data sampler still span all processes, as
        in Lightning.
    :param accelerator: accepted for Lightning's signature; weft takes it from ``Fabric(...)``,
        so anything but ``None`` raises rather than being ignored. The same holds for
        ``cluster_environment``, ``checkpoint_io`` and ``precision``.

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
    parallel_devices: list[Any] | None = None
    name: str = attrs.field(default="ddp", kw_only=True)

    def __init__(
        self,
        accelerator: Any = None,
        parallel_devices: list[Any] | None = None,
        cluster_environment: Any = None,
        checkpoint_io: Any = None,
        precision: Any = None,
        process_group_backend: str | None = None,
        timeout: float | datetime.timedelta | None = None,
        start_method: str = "elastic",
        **kwargs: Any,
    ) -> None:
        plugins = {"accelerator": accelerator, "cluster_environment": cluster_environment, "checkpoint_io": checkpoint_io, "precision": precision}
        for key, value in plugins.items():
            if value is not None:
                raise ConfigurationError(
                    f"DDPStrategy({key}={value!r}): weft does not take {key} from the strategy. "
                    f"Leave it out and pass it to {_LIGHTNING_PLUGINS[key]}."
                )
        own = {a.name for a in attrs.fields(type(self))}
        ddp_kwargs = dict(kwargs.pop("ddp_kwargs", None) or {})
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in own}
        known = _ddp_arguments()
        unknown = sorted(set(extra) - known) + sorted(set(ddp_kwargs) - known)
        if unknown:
            hint = (
                " These are FSDP options: use strategy='fsdp' or weft_fsdp.FSDPStrategy(...)."
                if set(unknown) & _FSDP_OPTIONS
                else ""
            )
            raise ConfigurationTypeError(
                f"DDPStrategy got unknown option(s) {', '.join(unknown)}: neither weft's options "
                f"({', '.join(sorted(own - {'ddp_kwargs'}))}) nor DistributedDataParallel arguments.{hint}"
            )
        clash = sorted((set(extra) | set(ddp_kwargs)) & _SET_BY_WEFT)
        if clash:
            raise ConfigurationError(f"DDPStrategy({', '.join(clash)}=...): weft sets these for each process; leave them out")
        ddp_kwargs.update(extra)
        # DDP arguments weft has fields for may arrive through ddp_kwargs too: one place each.
        for field in ("find_unused_parameters", "static_graph", "gradient_as_bucket_view"):
            if field in ddp_kwargs:
                if field in kwargs:
                    raise ConfigurationError(f"DDPStrategy got {field} twice (as an option and in ddp_kwargs); keep one")
                kwargs[field] = ddp_kwargs.pop(field)
        self.__attrs_init__(
            process_group_backend=process_group_backend, timeout=timeout, start_method=start_method,
            ddp_kwargs=ddp_kwargs, parallel_devices=None if parallel_devices is None else list(parallel_devices), **kwargs,
        )

    @hookimpl
    def weft_validate(self, fabric):
        if self.parallel_devices is None:
            return
        import torch

        wanted = [torch.device(d) for d in self.parallel_devices]
        types = {d.type for d in wanted}
        have = fabric.device.type
        if types != {have} or len(wanted) != fabric.num_devices:
            indices = [d.index or 0 for d in wanted]
            devices = len(wanted) if types == {"cpu"} else indices
            raise ConfigurationError(
                f"DDPStrategy(parallel_devices={[str(d) for d in wanted]}), but this Fabric runs "
                f"{fabric.num_devices} process(es) per node on {have!r}. Select the devices through Fabric: "
                f"Fabric(accelerator={sorted(types)[0]!r}, devices={devices!r}, strategy=...)."
            )

    # ------------------------------------------------------------------ processes

    @hookimpl
    def weft_strategy_capabilities(self):
        from weft.records import StrategyCapabilities

        # Every step DDP all-reduces (averages) the gradients; no_sync() really skips that
        # all-reduce; the sampler splits the data; rank 0 writes one file. "auto" picks plain
        # `ddp` for several processes; presets (ddp_spawn...) and subclasses must be asked for.
        auto = type(self) is DDPStrategy and self.name == "ddp"
        return StrategyCapabilities(
            multi_process=True,
            launches_processes=True,  # elastic re-runs the script; spawn/fork run launch(fn)
            gradient_sync="every_step",
            parameters="replicated",
            no_backward_sync=True,
            shards_data=True,
            checkpoint="file",
            auto_priority=10 if auto else None,
        )

    @hookimpl
    def weft_strategy_launch(self, fabric, function):
        from weft import launch

        if self.start_method in ("elastic", "popen"):
            return launch.launch_processes(fabric, function)
        return launch.spawn_processes(fabric, function, start_method=self.start_method)

    @hookimpl
    def weft_strategy_setup_environment(self, fabric):
        # Lightning's single `timeout` bounds the rendezvous too; init_timeout, when given, overrides that.
        init_timeout = self.init_timeout if self.init_timeout is not None else self.timeout
        wdist.init_process_group(
            fabric, backend=self.process_group_backend, timeout=init_timeout, collective_timeout=self.timeout
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
            from weft.utilities.init import skip_init

            stack.enter_context(skip_init())  # weights come from a checkpoint: skip initialisation
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
        # A save on other ranks only would write nothing: they check, through the store, that
        # rank 0 saves the same path too, and raise if it does not.
        wdist.match_rank_zero_call(
            f"fabric.save({path!r})", key=f"save:{os.path.abspath(path)}",
            hint="under DDP rank 0 writes the checkpoint; call fabric.save on every rank or on rank 0",
        )
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
