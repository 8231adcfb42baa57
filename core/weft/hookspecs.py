"""The hook specifications every weft plugin implements.

A plugin is an object (usually a class instance) whose methods are marked with
:data:`weft.hookimpl` and named after the hooks below. A :class:`~weft.Fabric`
creates one plugin manager, registers the accelerator, precision, strategy and
cluster environment it selected (plus any extra plugins the user passed) and
calls them only through these hooks. Hook names carry the kind they belong to
(``weft_accelerator_*``, ``weft_precision_*``, ``weft_strategy_*``,
``weft_environment_*``, ``weft_logger_*``); ``weft_validate`` and ``weft_setup_process`` are open
to every plugin.

An implementation may accept any subset of a hook's arguments, in any order:
pluggy passes them by name. Hooks marked *first result* stop at the first
implementation that returns something other than ``None``; an unimplemented
optional hook falls back to the behaviour described in its docstring.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ContextManager

import pluggy

if TYPE_CHECKING:  # imported for annotations only: keeps ``import weft`` light
    import torch

    from weft.fabric import Fabric
    from weft.records import Launched, PrecisionDtypes, StrategyCapabilities

PROJECT = "weft"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- accelerator


@hookspec(firstresult=True)
def weft_accelerator_is_available() -> bool:
    """Say whether this accelerator can be used in the current process.

    :returns: ``True`` when at least one device of this kind is usable.

    Example::

        @hookimpl
        def weft_accelerator_is_available(self):
            return torch.cuda.is_available()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_accelerator_device_count() -> int:
    """Count the devices of this kind visible to the process.

    :returns: the number of devices (respecting e.g. ``CUDA_VISIBLE_DEVICES``).

    Example::

        @hookimpl
        def weft_accelerator_device_count(self):
            return torch.cuda.device_count()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_accelerator_auto_priority() -> int:
    """Rank this accelerator for ``accelerator="auto"``.

    Among the installed accelerators whose :func:`weft_accelerator_is_available`
    is true, the one with the highest priority wins (``cpu`` answers 0).

    :returns: an integer; higher is preferred.

    Example::

        @hookimpl
        def weft_accelerator_auto_priority(self):
            return 20

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_accelerator_parse_devices(devices: int | str | list[int]) -> list[int]:
    """Turn the user's ``devices=`` value into the local device indices of this node.

    :param devices: what the user passed: an int (``-1`` for all), a string
        (``"auto"``, ``"2"``, ``"0,2"``, ``"-1"``) or a list of indices.
    :returns: the local device indices, one per process on this node. Raise
        :class:`weft.errors.ConfigurationError` for a value that cannot be honoured,
        saying how many devices exist.

    Example::

        @hookimpl
        def weft_accelerator_parse_devices(self, devices):
            return [0] if devices == "auto" else list(range(int(devices)))

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_accelerator_get_device(index: int) -> torch.device:
    """Give the ``torch.device`` for one of the indices from :func:`weft_accelerator_parse_devices`.

    :param index: a local device index.
    :returns: the device a process using that index computes on.

    Example::

        @hookimpl
        def weft_accelerator_get_device(self, index):
            return torch.device("cuda", index)

    .. versionadded:: 0.1
    """


@hookspec
def weft_accelerator_setup_device(device: torch.device) -> None:
    """Prepare the process to compute on ``device`` (e.g. ``torch.cuda.set_device``).

    :param device: the device chosen for this process.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_accelerator_setup_device(self, device):
            torch.cuda.set_device(device)

    .. versionadded:: 0.1
    """


@hookspec
def weft_accelerator_teardown() -> None:
    """Release what :func:`weft_accelerator_setup_device` acquired.

    :returns: nothing.

    Example::

        @hookimpl
        def weft_accelerator_teardown(self):
            torch.cuda.empty_cache()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_accelerator_process_group_backend(device: torch.device) -> str:
    """Name the ``torch.distributed`` backend that suits ``device``.

    Strategies ask this instead of guessing from the device type.

    :param device: the device of this process.
    :returns: a backend name such as ``"gloo"`` or ``"nccl"``.

    Example::

        @hookimpl
        def weft_accelerator_process_group_backend(self, device):
            return "nccl"

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- precision


@hookspec(firstresult=True)
def weft_precision_dtypes() -> PrecisionDtypes:
    """Describe the dtypes this precision uses, for strategies and users.

    Sharding strategies map this onto their own mixed-precision policy (for
    FSDP2, ``MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=reduce)``).

    :returns: a :class:`weft.records.PrecisionDtypes` with the parameter
        (storage), compute and gradient-reduction dtypes.

    Example::

        @hookimpl
        def weft_precision_dtypes(self):
            return PrecisionDtypes(param=torch.float32, compute=torch.bfloat16,
                                   reduce=torch.float32)

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_convert_module(module: torch.nn.Module) -> torch.nn.Module:
    """Convert a module's parameters and buffers to this precision's storage dtype.

    :param module: the user's module, before the strategy wraps it.
    :returns: the converted module (often the same object).

    Example::

        @hookimpl
        def weft_precision_convert_module(self, module):
            return module.to(torch.bfloat16)

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_module_init_context() -> ContextManager[None]:
    """Give a context under which new modules are created in this precision.

    Used by :meth:`Fabric.init_module` and :meth:`Fabric.init_tensor`.

    :returns: a context manager (e.g. one that sets the default dtype).

    Example::

        @contextlib.contextmanager
        def float64_by_default():
            previous = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                yield
            finally:
                torch.set_default_dtype(previous)

        @hookimpl
        def weft_precision_module_init_context(self):
            return float64_by_default()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_forward_context() -> ContextManager[None]:
    """Give the context the model's forward runs in (autocast for mixed precision).

    Also what :meth:`Fabric.autocast` returns. Leave unimplemented when the
    forward needs no context: weft then adds nothing to the call.

    :returns: a context manager.

    Example::

        @hookimpl
        def weft_precision_forward_context(self):
            return torch.autocast("cpu", dtype=torch.bfloat16)

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_convert_input(data: Any) -> Any:
    """Convert the positional and keyword inputs of a forward call.

    Called with a tuple ``(args, kwargs)``. Leave unimplemented when inputs
    pass through untouched.

    :param data: ``(args, kwargs)`` of the forward call.
    :returns: the converted ``(args, kwargs)``.

    Example::

        @hookimpl
        def weft_precision_convert_input(self, data):
            return weft.utilities.apply.convert_floating(data, torch.float64)

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_convert_output(data: Any) -> Any:
    """Convert what the model's forward returned.

    Leave unimplemented when outputs pass through untouched.

    :param data: the forward's return value.
    :returns: the converted value.

    Example::

        @hookimpl
        def weft_precision_convert_output(self, data):
            return weft.utilities.apply.convert_floating(data, torch.get_default_dtype())

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_pre_backward(tensor: torch.Tensor) -> torch.Tensor:
    """Transform the loss before the strategy runs backward (e.g. scale it).

    :param tensor: the loss passed to :meth:`Fabric.backward`.
    :returns: the tensor to differentiate.

    Example::

        @hookimpl
        def weft_precision_pre_backward(self, tensor):
            return self.scaler.scale(tensor)

    .. versionadded:: 0.1
    """


@hookspec
def weft_precision_unscale_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Bring the gradients of ``optimizer`` back to their true scale before clipping.

    :param optimizer: the raw optimizer whose parameters are about to be clipped.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_precision_unscale_gradients(self, optimizer):
            self.scaler.unscale_(optimizer)

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_optimizer_step(optimizer: torch.optim.Optimizer, step: Callable[[], Any]) -> Any:
    """Wrap the optimizer step: decide whether and how ``step`` runs.

    ``step`` performs the strategy's step (see :func:`weft_strategy_optimizer_step`).
    A gradient scaler unscales, skips ``step`` when gradients are not finite and
    updates its scale. Leave unimplemented to have ``step`` called directly.

    :param optimizer: the raw optimizer.
    :param step: a no-argument callable that performs the step and returns its result.
    :returns: what ``step`` returned, or ``None`` when the step was skipped.

    Example::

        @hookimpl
        def weft_precision_optimizer_step(self, optimizer, step):
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if not all(torch.isfinite(grad).all() for grad in grads):
                return None  # the gradients overflowed: skip this step
            return step()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_precision_state_dict() -> dict[str, Any]:
    """Return precision state that belongs in checkpoints (e.g. the scaler's).

    :returns: a dict, or ``None`` when there is no state.

    Example::

        @hookimpl
        def weft_precision_state_dict(self):
            return self.scaler.state_dict()

    .. versionadded:: 0.1
    """


@hookspec
def weft_precision_load_state_dict(state: dict[str, Any]) -> None:
    """Restore what :func:`weft_precision_state_dict` returned.

    :param state: the dict saved in the checkpoint.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_precision_load_state_dict(self, state):
            self.scaler.load_state_dict(state)

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- strategy


@hookspec(firstresult=True)
def weft_strategy_launch(fabric: Fabric, function: Callable[[], Any] | None) -> Launched:
    """Start the processes of this job when they do not exist yet.

    Called by :meth:`Fabric.launch` only when the cluster environment did not
    create the processes and more than one is needed on this node.

    :param fabric: the calling Fabric.
    :param function: ``None`` when the user called ``launch()`` (the whole script
        should run in each process), else a picklable no-argument callable that, run
        in a new process, sets that process up and runs the user's function.
    :returns: a :class:`weft.records.Launched` holding rank 0's result, or ``None``
        when this strategy does not launch processes.

    Example::

        @hookimpl
        def weft_strategy_launch(self, fabric, function):
            return weft.launch.launch_processes(fabric, function)  # a weft.Launched

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_capabilities() -> StrategyCapabilities:
    """Declare what this strategy guarantees.

    Core and the conformance kit read the answer instead of assuming DDP-like
    behaviour: the kit checks per-step gradient averaging only for
    ``gradient_sync="every_step"``, data sharding only for ``shards_data`` and so
    on, and ``strategy="auto"`` picks among strategies by ``auto_priority``.

    :returns: a :class:`weft.records.StrategyCapabilities`. ``None`` (not
        implemented) means the documented fallback, ``StrategyCapabilities()``:
        a multi-process strategy that launches its processes, syncs gradients
        every step, replicates parameters, shards data, honours
        ``no_backward_sync``, saves one file and is never chosen by ``"auto"``.

    Example::

        @hookimpl
        def weft_strategy_capabilities(self):
            return StrategyCapabilities(gradient_sync="periodic", sync_every=self.sync_every,
                                        no_backward_sync=False)

    .. versionadded:: 0.3
    """


@hookspec
def weft_strategy_setup_environment(fabric: Fabric) -> None:
    """Prepare this process for the strategy (e.g. create the process group).

    Runs once per process, after launch and before any module is set up.

    :param fabric: the calling Fabric (ranks, device and environment are known).
    :returns: nothing.

    Example::

        @hookimpl
        def weft_strategy_setup_environment(self, fabric):
            torch.distributed.init_process_group("gloo", rank=fabric.global_rank,
                                                 world_size=fabric.world_size)

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_module_init_context(fabric: Fabric, empty_init: bool | None) -> ContextManager[None]:
    """Give the context :meth:`Fabric.init_module` creates modules under.

    :param fabric: the calling Fabric.
    :param empty_init: ``True`` to skip weight initialisation (e.g. build on the
        meta device and materialise later), ``None`` for the strategy's default.
    :returns: a context manager.

    Example::

        @hookimpl
        def weft_strategy_module_init_context(self, fabric, empty_init):
            return torch.device("meta") if empty_init else fabric.device

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_setup_module(fabric: Fabric, module: torch.nn.Module) -> torch.nn.Module:
    """Move ``module`` to the device and wrap it for the strategy.

    :param fabric: the calling Fabric.
    :param module: the user's module, already converted by the precision.
    :returns: the module to call in forward (e.g. a ``DistributedDataParallel``).

    Example::

        @hookimpl
        def weft_strategy_setup_module(self, fabric, module):
            return torch.nn.parallel.DistributedDataParallel(module.to(fabric.device))

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_setup_optimizer(fabric: Fabric, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Prepare an optimizer for the strategy.

    Raise :class:`weft.errors.MisuseError` when the optimizer was set up in an
    order the strategy cannot support, saying what to do instead.

    :param fabric: the calling Fabric.
    :param optimizer: the user's optimizer.
    :returns: the optimizer to step (often the same object).

    Example::

        @hookimpl
        def weft_strategy_setup_optimizer(self, fabric, optimizer):
            return optimizer

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_setup_module_and_optimizers(
    fabric: Fabric, module: torch.nn.Module, optimizers: list[torch.optim.Optimizer]
) -> tuple[torch.nn.Module, list[torch.optim.Optimizer]]:
    """Set up a module together with its optimizers, for :meth:`Fabric.setup`.

    Strategies that replace parameters (sharding) implement this to point the
    optimizers at the new parameters. Unimplemented, weft calls
    :func:`weft_strategy_setup_module` and then :func:`weft_strategy_setup_optimizer`.

    :param fabric: the calling Fabric.
    :param module: the user's module, already converted by the precision.
    :param optimizers: the user's optimizers for that module.
    :returns: ``(wrapped_module, optimizers)``.

    Example::

        @hookimpl
        def weft_strategy_setup_module_and_optimizers(self, fabric, module, optimizers):
            torch.distributed.fsdp.fully_shard(module)  # replaces the parameters by sharded ones
            # Optimizers created before hold the old parameters: build them again on the new ones.
            return module, [type(o)(module.parameters(), **o.defaults) for o in optimizers]

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_distributed_sampler_kwargs(fabric: Fabric) -> dict[str, Any]:
    """Ask whether data loaders need a distributed sampler, and with which arguments.

    :param fabric: the calling Fabric.
    :returns: ``{"num_replicas": ..., "rank": ...}`` for a ``DistributedSampler``,
        or ``None`` when every process should see the whole data set.

    Example::

        @hookimpl
        def weft_strategy_distributed_sampler_kwargs(self, fabric):
            return {"num_replicas": fabric.world_size, "rank": fabric.global_rank}

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_backward(fabric: Fabric, tensor: torch.Tensor, module: torch.nn.Module | None) -> None:
    """Run backward on ``tensor``. Unimplemented: ``tensor.backward()``.

    :param fabric: the calling Fabric.
    :param tensor: the (possibly scaled) loss.
    :param module: the wrapped module the loss came from, when known.
    :returns: ``True`` when it ran backward. ``None`` means "not handled", as for every hook:
        weft then runs ``tensor.backward()`` itself, so an implementation that ran backward and
        returned ``None`` would run it twice.

    Example::

        @hookimpl
        def weft_strategy_backward(self, fabric, tensor, module):
            tensor.backward()
            return True

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_optimizer_step(fabric: Fabric, optimizer: torch.optim.Optimizer) -> Any:
    """Perform one optimizer step. Unimplemented: ``optimizer.step()``.

    Runs inside :func:`weft_precision_optimizer_step`, which may skip it.

    :param fabric: the calling Fabric.
    :param optimizer: the raw optimizer.
    :returns: what ``optimizer.step()`` returned.

    Example::

        @hookimpl
        def weft_strategy_optimizer_step(self, fabric, optimizer):
            out = optimizer.step()
            self.steps += 1
            if self.steps % self.sync_every == 0:  # Local SGD: average the replicas now and then
                weft.distributed.average_parameters(self.module)
            return out

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_no_backward_sync(fabric: Fabric, module: torch.nn.Module, enabled: bool) -> ContextManager[None]:
    """Give a context in which backward does not synchronise gradients.

    :param fabric: the calling Fabric.
    :param module: the wrapped module (as returned by :func:`weft_strategy_setup_module`).
    :param enabled: ``False`` means the caller wants a normal, syncing step.
    :returns: a context manager; unimplemented means the strategy never syncs.

    Example::

        @hookimpl
        def weft_strategy_no_backward_sync(self, fabric, module, enabled):
            return module.no_sync() if enabled else contextlib.nullcontext()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_clip_gradients_norm(
    fabric: Fabric,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    max_norm: float,
    norm_type: float,
    error_if_nonfinite: bool,
) -> torch.Tensor:
    """Clip gradients to a total norm, computed over all of the model's shards.

    Gradients are already unscaled when this runs.

    :param fabric: the calling Fabric.
    :param module: the wrapped module.
    :param optimizer: the raw optimizer whose parameters are clipped.
    :param max_norm: the largest total norm allowed.
    :param norm_type: the p of the p-norm (``inf`` allowed).
    :param error_if_nonfinite: when true and the total norm is inf or NaN, raise
        :class:`~weft.errors.NonFiniteNormError` *before* touching the gradients
        (:func:`weft.clipping.check_finite_norm`), as ``torch.nn.utils.clip_grad_norm_`` does.
        An implementation that leaves this argument out still gets the error from Fabric,
        but only after it clipped.
    :returns: the total norm before clipping.

    Example::

        @hookimpl
        def weft_strategy_clip_gradients_norm(self, fabric, module, optimizer, max_norm, norm_type, error_if_nonfinite):
            total = torch.nn.utils.get_total_norm([p.grad for p in module.parameters()], norm_type)
            if error_if_nonfinite:
                weft.clipping.check_finite_norm(total, norm_type)
            torch.nn.utils.clip_grads_with_norm_(module.parameters(), max_norm, total)
            return total

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``error_if_nonfinite`` argument.
    """


@hookspec(firstresult=True)
def weft_strategy_clip_gradients_value(
    fabric: Fabric, module: torch.nn.Module, optimizer: torch.optim.Optimizer, clip_val: float
) -> bool:
    """Clamp every gradient element to ``[-clip_val, clip_val]``.

    :param fabric: the calling Fabric.
    :param module: the wrapped module.
    :param optimizer: the raw optimizer whose parameters are clipped.
    :param clip_val: the largest absolute value allowed.
    :returns: ``True`` once done.

    Example::

        @hookimpl
        def weft_strategy_clip_gradients_value(self, fabric, module, optimizer, clip_val):
            torch.nn.utils.clip_grad_value_(module.parameters(), clip_val)
            return True

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_all_reduce(fabric: Fabric, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
    """Reduce ``tensor`` across all processes.

    :param fabric: the calling Fabric.
    :param tensor: a tensor on this process's device.
    :param reduce_op: one of ``"sum"``, ``"mean"``, ``"max"``, ``"min"``.
    :returns: the reduced tensor: a new one, or ``tensor`` itself reduced in place. Either
        way :meth:`Fabric.all_reduce <weft.fabric.Fabric.all_reduce>` leaves the result in the
        caller's tensor, as Lightning Fabric does.

    Example::

        @hookimpl
        def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
            return tensor.clone()  # one process: nothing to reduce

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_all_gather(fabric: Fabric, tensor: torch.Tensor, sync_grads: bool) -> torch.Tensor:
    """Gather ``tensor`` from all processes, stacked along a new first dimension.

    :param fabric: the calling Fabric.
    :param tensor: a tensor of the same shape on every process.
    :param sync_grads: keep the gather differentiable.
    :returns: a tensor of shape ``(world_size, *tensor.shape)``. A strategy that only ever
        runs one process may return ``tensor`` as it is (Lightning's single-device strategy
        adds no dimension, and scripts written for it rely on that).

    Example::

        @hookimpl
        def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
            return tensor  # one process: nothing to gather

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_broadcast(fabric: Fabric, obj: Any, src: int) -> Any:
    """Send a picklable object from process ``src`` to all processes.

    :param fabric: the calling Fabric.
    :param obj: the object (meaningful on ``src`` only).
    :param src: the global rank that sends.
    :returns: a one-element list holding the object as this process received
        it (a list, so that ``None`` can be broadcast too).

    Example::

        @hookimpl
        def weft_strategy_broadcast(self, fabric, obj, src):
            box = [obj]
            torch.distributed.broadcast_object_list(box, src)
            return box

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_barrier(fabric: Fabric, name: str | None) -> bool:
    """Wait until every process reaches this point.

    Implementations must wait with a bounded timeout and name the ranks that
    did not arrive when they know them.

    :param fabric: the calling Fabric.
    :param name: an optional label, for error messages.
    :returns: ``True`` once all processes arrived.

    Example::

        @hookimpl
        def weft_strategy_barrier(self, fabric, name):
            torch.distributed.monitored_barrier(timeout=self.timeout)
            return True

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_save_checkpoint(fabric: Fabric, path: str, state: dict[str, Any], filter: dict | None) -> bool:
    """Write ``state`` to ``path`` atomically (written aside, then moved into place).

    ``state`` holds plain objects: weft has already replaced set-up modules and
    optimizers with the raw ones, so the strategy extracts their state itself.

    :param fabric: the calling Fabric.
    :param path: the target file or folder.
    :param state: what to save: modules, optimizers, anything else picklable.
    :param filter: optional ``{key: callable(name, value) -> bool}`` selecting
        which entries of a state dict to keep.
    :returns: ``True`` once written.

    Example::

        @hookimpl
        def weft_strategy_save_checkpoint(self, fabric, path, state, filter):
            weft.checkpoint.atomic_torch_save(weft.checkpoint.to_state_dicts(state, filter), path)
            return True

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_load_checkpoint(
    fabric: Fabric, path: str, state: dict[str, Any] | None, strict: bool, weights_only: bool
) -> dict[str, Any]:
    """Read a checkpoint and restore it into ``state`` in place.

    :param fabric: the calling Fabric.
    :param path: the file or folder written by a save.
    :param state: raw modules, optimizers and values to restore into; ``None``
        to return everything raw.
    :param strict: raise on missing or unexpected keys.
    :param weights_only: load with ``torch.load(weights_only=True)``.
    :returns: the entries of the checkpoint that were not restored into ``state``.

    Example::

        @hookimpl
        def weft_strategy_load_checkpoint(self, fabric, path, state, strict, weights_only):
            return weft.checkpoint.restore(weft.checkpoint.load_file(path, weights_only=weights_only), state, strict)

    .. versionadded:: 0.1
    """


@hookspec
def weft_strategy_teardown(fabric: Fabric) -> None:
    """Release what the strategy acquired (e.g. destroy its process group).

    :param fabric: the calling Fabric.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_strategy_teardown(self, fabric):
            torch.distributed.destroy_process_group()

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_strategy_state_dict() -> dict[str, Any]:
    """Return strategy state that belongs in checkpoints (e.g. a step counter that decides when
    parameters are averaged next).

    :meth:`Fabric.save <weft.fabric.Fabric.save>` stores the answer under the key
    ``"weft_strategy"`` (:data:`weft.checkpoint.STRATEGY_KEY`) and
    :meth:`Fabric.load <weft.fabric.Fabric.load>` gives it back through
    :func:`weft_strategy_load_state_dict`. Return what ``torch.load(weights_only=True)`` can
    read (tensors, numbers, strings, lists, dicts). A single-file checkpoint holds the writing
    process's answer (rank 0's), so keep this state equal on every rank.

    :returns: a dict, or ``None`` (or ``{}``) when there is no state.

    Example::

        @hookimpl
        def weft_strategy_state_dict(self):
            return {"steps_since_sync": self.steps_since_sync}

    .. versionadded:: 0.3
    """


@hookspec
def weft_strategy_load_state_dict(state: dict[str, Any]) -> None:
    """Restore what :func:`weft_strategy_state_dict` returned when the checkpoint was saved.

    Called by :meth:`Fabric.load <weft.fabric.Fabric.load>` (with a ``state`` dict) on every
    rank, after the user's objects are restored. A checkpoint without the entry (saved by
    another strategy, or before this strategy had state) is an error under ``strict=True``
    when :func:`weft_strategy_state_dict` answers something now; ``strict=False`` keeps the
    strategy's current state.

    :param state: the dict saved in the checkpoint.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_strategy_load_state_dict(self, state):
            self.steps_since_sync = state["steps_since_sync"]

    .. versionadded:: 0.3
    """


# --------------------------------------------------------------------------- cluster environment


@hookspec(firstresult=True)
def weft_environment_detect() -> int:
    """Say whether the process runs in this environment, and how specifically.

    For auto-detection weft asks every installed environment and keeps the
    highest answer (built-ins: ``torchelastic`` 30, ``slurm`` 20, ``local`` 0).

    :returns: a priority when detected, ``None`` when not.

    Example::

        @hookimpl
        def weft_environment_detect(self):
            return 25 if "LSB_JOBID" in os.environ else None

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_creates_processes_externally() -> bool:
    """Say whether something outside weft already started every process.

    When true, :meth:`Fabric.launch` starts nothing.

    :returns: ``True`` under e.g. torchrun, ``weft run`` or ``srun``.

    Example::

        @hookimpl
        def weft_environment_creates_processes_externally(self):
            return True

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_world_size() -> int:
    """Give the total number of processes of the job.

    :returns: the world size, or ``None`` to let weft compute
        ``num_nodes * devices``.

    Example::

        @hookimpl
        def weft_environment_world_size(self):
            return int(os.environ["SLURM_NTASKS"])

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_global_rank() -> int:
    """Give this process's rank among all processes.

    :returns: the global rank, or ``None`` for 0.

    Example::

        @hookimpl
        def weft_environment_global_rank(self):
            return int(os.environ["SLURM_PROCID"])

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_local_rank() -> int:
    """Give this process's rank among the processes of its node.

    :returns: the local rank, or ``None`` for 0.

    Example::

        @hookimpl
        def weft_environment_local_rank(self):
            return int(os.environ["SLURM_LOCALID"])

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_node_rank() -> int:
    """Give the index of this process's node.

    :returns: the node rank, or ``None`` for 0.

    Example::

        @hookimpl
        def weft_environment_node_rank(self):
            return int(os.environ["SLURM_NODEID"])

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_main_address() -> str:
    """Give the address of the process with global rank 0.

    :returns: a host name or IP address.

    Example::

        @hookimpl
        def weft_environment_main_address(self):
            return os.environ.get("MASTER_ADDR", "127.0.0.1")

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def weft_environment_main_port() -> int:
    """Give the TCP port rank 0 listens on for the process group's store.

    :returns: a port number.

    Example::

        @hookimpl
        def weft_environment_main_port(self):
            return int(os.environ.get("MASTER_PORT", 29500))

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------- logger
# Fabric calls these on global rank 0 only, on each logger in the order ``Fabric(loggers=...)``
# lists them, with every tensor already turned into a Python number. An error names the logger.


@hookspec
def weft_logger_log_metrics(metrics: dict[str, float], step: int | None) -> None:
    """Record metrics: what :meth:`Fabric.log <weft.fabric.Fabric.log>` and
    :meth:`Fabric.log_dict <weft.fabric.Fabric.log_dict>` were given.

    :param metrics: metric name -> value (Python numbers; other values as the user passed them).
    :param step: the step the user gave, or ``None`` to let the logger count.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_logger_log_metrics(self, metrics, step):
            self.rows.append({"step": step, **metrics})

    .. versionadded:: 0.2
    """


@hookspec
def weft_logger_log_hyperparams(params: dict[str, Any]) -> None:
    """Record the run's hyperparameters (:meth:`Fabric.log_hyperparams <weft.fabric.Fabric.log_hyperparams>`).

    :param params: hyperparameter name -> value (an ``argparse.Namespace`` is given as its dict).
    :returns: nothing.

    Example::

        @hookimpl
        def weft_logger_log_hyperparams(self, params):
            self.hparams.update(params)

    .. versionadded:: 0.2
    """


@hookspec
def weft_logger_save() -> None:
    """Write what the logger buffered to its storage.

    Fabric calls it after :meth:`Fabric.save <weft.fabric.Fabric.save>` wrote a checkpoint, so
    the logs on disk reach at least as far as the checkpoint does.

    :returns: nothing.

    Example::

        @hookimpl
        def weft_logger_save(self):
            self.file.flush()

    .. versionadded:: 0.2
    """


@hookspec
def weft_logger_finalize(status: str) -> None:
    """End the run: write everything still buffered and release files or connections.

    Fabric calls it once per process, when the script ends or the function given to
    :meth:`Fabric.launch <weft.fabric.Fabric.launch>` returns (``"success"``), or when it dies
    with an exception or is stopped by its launcher because another rank failed (``"failed"``).

    :param status: ``"success"``, ``"failed"`` or ``"finished"``.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_logger_finalize(self, status):
            self.save()
            self.file.close()

    .. versionadded:: 0.2
    """


# --------------------------------------------------------------------------- any plugin


@hookspec
def weft_validate(fabric: Fabric) -> None:
    """Reject impossible combinations before any work starts.

    Every registered plugin may implement this; it runs at the end of
    ``Fabric(...)``. Raise :class:`weft.errors.ConfigurationError` saying what
    to change.

    :param fabric: the new Fabric; its ``accelerator_name``, ``precision_name``,
        ``strategy_name``, ``num_nodes`` and ``devices`` are set.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_validate(self, fabric):
            if fabric.accelerator_name == "cpu" and fabric.precision_name == "16-true":
                raise ConfigurationError("16-true needs a GPU; use bf16-true on CPU")

    .. versionadded:: 0.1
    """



@hookspec
def weft_setup_process(fabric: Fabric) -> None:
    """Prepare this process, once, before the user's training code runs in it.

    Every registered plugin may implement this (accelerator, precision, strategy, cluster
    environment, loggers and extra ``plugins=[...]`` objects). It runs in each process that
    trains: every process started by ``fabric.launch()``, ``weft run``, ``torchrun`` or
    ``srun``, and the only process of a one-process job; not in a process that only
    supervises the workers. Order within :meth:`Fabric.launch <weft.fabric.Fabric.launch>`
    (or the first ``fabric.setup``/collective of a one-process job): the ranks are read, the
    accelerator sets the device up (``weft_accelerator_setup_device``), then this hook, then
    ``weft_strategy_setup_environment`` (the process group). So ``fabric.device`` and the ranks
    are known here, and settings that must precede the process group (environment variables,
    backend flags, thread counts) take effect; collectives are not available yet.

    :param fabric: the Fabric setting this process up; ``global_rank``, ``local_rank``,
        ``world_size`` and ``device`` are set.
    :returns: nothing.

    Example::

        @hookimpl
        def weft_setup_process(self, fabric):
            torch.set_num_threads(max(1, os.cpu_count() // fabric.num_devices))

    .. versionadded:: 0.3
    """
