"""``FSDPStrategy``: fully sharded data parallel training on PyTorch's FSDP2 (``fully_shard``).

Each rank keeps one shard of every parameter, of its gradient and of the optimizer
state. Before a wrapped module runs, its parameters are all-gathered; after
backward, its gradients are reduce-scattered. It runs on CUDA (NCCL) and on the
CPU (gloo), so sharded code can be tested on a machine without GPUs.
"""

from __future__ import annotations

import contextlib
import datetime
import weakref
from typing import Any, Callable, Iterator

import attrs
import torch
import torch.distributed as dist
from torch import nn

from weft import distributed as wdist
from weft.clipping import check_finite_norm
from weft.errors import ConfigurationError, MisuseError
from weft.devices import RootDevice  # strategy.root_device, as Lightning's
from weft.hookspecs import hookimpl

from weft_fsdp import _checkpoint, _dist, _sharding

_STATE_DICT_TYPES = ("sharded", "full")
_SAVE_HINT = (
    "Do not guard fabric.save with `if fabric.is_global_zero:` under FSDP; call it on every rank "
    "(only the files of each rank's own shards are written by that rank)."
)


def _check_policy(option: str) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        _sharding.policy_matcher(value, option)

    return check


@attrs.define(eq=False)
class FSDPStrategy(wdist.CollectiveHooks, RootDevice):
    """Shard parameters, gradients and optimizer state across processes with FSDP2.

    :param auto_wrap_policy: which submodules become their own FSDP unit (gathered and
        freed on their own): a set of module classes such as ``{nn.TransformerDecoderLayer}``,
        or ``callable(module) -> bool``. The root module is always a unit.
    :param activation_checkpointing_policy: which submodules recompute their activations
        in backward instead of storing them (same forms). Applied before sharding.
    :param cpu_offload: ``True`` keeps the sharded parameters, gradients and optimizer
        state in CPU memory (the optimizer steps on the CPU); or an FSDP2 ``OffloadPolicy``.
    :param reshard_after_forward: free the gathered parameters after forward (``True``),
        keep them until backward (``False``), or reshard to a smaller group (an int);
        ``None`` for FSDP's default (and ``False`` under ``SHARD_GRAD_OP``).
    :param sharding_strategy: ``"FULL_SHARD"`` (default), ``"SHARD_GRAD_OP"`` (keep
        parameters gathered between forward and backward), ``"NO_SHARD"`` (replicate, like
        DDP), or ``"HYBRID_SHARD"`` (shard within a group, replicate across groups: a 2-D
        device mesh, by default one group per node; see ``device_mesh``).
    :param state_dict_type: ``"sharded"`` (default): :meth:`Fabric.save` writes a folder in
        which each rank writes its own shards; ``"full"``: rank 0 writes one file that plain
        ``torch.load`` reads.
    :param timeout: seconds (or a ``timedelta``) a rank waits for the others, both in the
        process group's collectives and when entering a checkpoint save or load; ``None``
        for weft's collective timeout (``WEFT_COLLECTIVE_TIMEOUT``, else 600 s).
    :param process_group_backend: ``"gloo"``, ``"nccl"``...; ``None`` asks the accelerator.
    :param device_mesh: ``(replicas, shard_size)`` for ``HYBRID_SHARD``.

    .. versionadded:: 0.1
    """

    auto_wrap_policy: Any = attrs.field(default=None, validator=_check_policy("auto_wrap_policy"))
    activation_checkpointing_policy: Any = attrs.field(default=None, validator=_check_policy("activation_checkpointing_policy"))
    cpu_offload: Any = False
    reshard_after_forward: bool | int | None = None
    sharding_strategy: str = attrs.field(default="FULL_SHARD", converter=_sharding.normalize_sharding_strategy)
    state_dict_type: str = "sharded"
    timeout: float | datetime.timedelta | None = None
    process_group_backend: str | None = None
    device_mesh: tuple[int, int] | None = None
    name: str = attrs.field(default="fsdp", kw_only=True, repr=False)
    _modules: list = attrs.field(factory=list, init=False, repr=False)
    _agreement: _dist.Agreement = attrs.field(factory=_dist.Agreement, init=False, repr=False)
    _owns_group: bool = attrs.field(default=False, init=False, repr=False)
    _mesh: Any = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.state_dict_type not in _STATE_DICT_TYPES:
            raise ConfigurationError(f"state_dict_type={self.state_dict_type!r} must be 'sharded' or 'full'")
        if not isinstance(self.cpu_offload, bool) and self.cpu_offload is not None:
            # Validates the value; True/False/None are valid, and checking them would import
            # torch.distributed.fsdp (seconds), which strategy="auto" pays for by creating every strategy.
            _sharding.offload_policy(self.cpu_offload, torch.device("cpu"))
        if self.device_mesh is not None and self.sharding_strategy != "HYBRID_SHARD":
            raise ConfigurationError("device_mesh is only used with sharding_strategy='HYBRID_SHARD'")

    def __getstate__(self) -> dict[str, Any]:
        # Sent to launched processes before any module exists: drop the weak references.
        state = {a.name: getattr(self, a.name) for a in attrs.fields(type(self))}
        state["_modules"], state["_mesh"] = [], None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------------ processes

    @property
    def _timeout(self) -> datetime.timedelta:
        return wdist.collective_timeout(self.timeout)

    @hookimpl
    def weft_strategy_capabilities(self):
        from weft.records import StrategyCapabilities

        # Gradients are reduce-scattered after every backward (set_requires_gradient_sync(False)
        # really skips that); NO_SHARD keeps whole parameters on every rank, as DDP does.
        return StrategyCapabilities(
            multi_process=True,
            launches_processes=True,
            gradient_sync="every_step",
            parameters="replicated" if self.sharding_strategy == "NO_SHARD" else "sharded",
            no_backward_sync=True,
            shards_data=True,
            checkpoint="folder" if self.state_dict_type == "sharded" else "file",
            auto_priority=None,  # asked for by name only
        )

    @hookimpl
    def weft_strategy_launch(self, fabric, function):
        from weft.launch import launch_processes

        return launch_processes(fabric, function)

    @hookimpl
    def weft_strategy_setup_environment(self, fabric):
        self._owns_group = not dist.is_initialized()
        wdist.init_process_group(fabric, backend=self.process_group_backend, collective_timeout=self._timeout)

    @hookimpl
    def weft_strategy_teardown(self, fabric):
        self._modules.clear()
        self._mesh = None
        if self._owns_group:
            wdist.destroy_process_group()
        self._owns_group = False

    @hookimpl
    def weft_strategy_distributed_sampler_kwargs(self, fabric):
        return {"num_replicas": fabric.world_size, "rank": fabric.global_rank}

    # ------------------------------------------------------------------ modules

    @hookimpl
    def weft_strategy_module_init_context(self, fabric, empty_init):
        # Meta tensors take no memory; setup shards them and allocates only the local shard.
        return torch.device("meta") if empty_init else fabric.device

    def _device_mesh(self, fabric: Any) -> Any:
        if self._mesh is None:
            self._mesh = _sharding.build_mesh(
                fabric.device.type, fabric.world_size, fabric.num_nodes, self.sharding_strategy, self.device_mesh
            )
        return self._mesh

    def _shard(self, fabric: Any, module: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FSDPModule

        if isinstance(module, FSDPModule):
            raise MisuseError("this module is already sharded (fully_shard was applied); pass the unsharded model")
        reshard = self.reshard_after_forward
        if reshard is None and self.sharding_strategy == "SHARD_GRAD_OP":
            reshard = False
        offload = _sharding.offload_policy(self.cpu_offload, fabric.device)
        meta = _sharding.has_meta_tensors(module)
        _sharding.apply(
            module,
            mesh=self._device_mesh(fabric),
            wrap=_sharding.policy_matcher(self.auto_wrap_policy, "auto_wrap_policy"),
            checkpointing=_sharding.policy_matcher(self.activation_checkpointing_policy, "activation_checkpointing_policy"),
            reshard_after_forward=reshard,
            mp_policy=_sharding.mixed_precision_policy(fabric.precision_dtypes),
            offload=offload,
        )
        if meta:
            offloaded = type(offload).__name__ != "OffloadPolicy"
            _sharding.materialize(module, torch.device("cpu") if offloaded else fabric.device)
        self._modules.append(weakref.ref(module))
        return module

    def _sharded_modules(self) -> list[nn.Module]:
        return [m for m in (ref() for ref in self._modules) if m is not None]

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        return self._shard(fabric, module)

    @hookimpl
    def weft_strategy_setup_optimizer(self, fabric, optimizer):
        modules = self._sharded_modules()
        if not modules:
            raise MisuseError(
                "FSDP shards the model's parameters, so the optimizer must be built from the sharded ones: "
                "call fabric.setup_module(model) first, then create the optimizer from model.parameters() and "
                "call fabric.setup_optimizers(optimizer) - or pass both at once: fabric.setup(model, optimizer)."
            )
        sharded = {id(p) for m in modules for p in m.parameters()}
        if any(id(p) not in sharded for group in optimizer.param_groups for p in group["params"]):
            raise MisuseError(
                "This optimizer holds parameters that are not the model's sharded parameters (it was probably "
                "created before fabric.setup_module(model)). Create it after setup_module from the returned "
                "model's parameters, or pass model and optimizer together: fabric.setup(model, optimizer)."
            )
        return optimizer

    @hookimpl
    def weft_strategy_setup_module_and_optimizers(self, fabric, module, optimizers):
        names = {}
        for name, param in module.named_parameters(remove_duplicate=False):
            names.setdefault(id(param), name)
        for optimizer in optimizers:
            if optimizer.state:
                raise MisuseError(
                    "fabric.setup(model, optimizer) with FSDP needs an optimizer that has not stepped yet: its state "
                    "would not match the sharded parameters. Set up before training, then fabric.load a checkpoint."
                )
            for group in optimizer.param_groups:
                if any(id(p) not in names for p in group["params"]):
                    raise MisuseError("the optimizer updates parameters that are not in the model passed to fabric.setup()")
        self._shard(fabric, module)
        new = dict(module.named_parameters(remove_duplicate=False))
        for optimizer in optimizers:
            # fully_shard replaced every parameter with a sharded one: point the optimizer at those.
            for group in optimizer.param_groups:
                group["params"] = [new[names[id(p)]] for p in group["params"]]
        return module, list(optimizers)

    # ------------------------------------------------------------------ training step

    @hookimpl
    def weft_strategy_no_backward_sync(self, fabric, module, enabled):
        return _no_gradient_sync(module) if enabled else contextlib.nullcontext()

    @hookimpl
    def weft_strategy_clip_gradients_norm(self, fabric, module, optimizer, max_norm, norm_type, error_if_nonfinite):
        grads = [p.grad for p in _params(optimizer)]
        total = torch.nn.utils.get_total_norm(grads, norm_type=norm_type)
        total = _full(total)  # a DTensor norm holds partial sums: reduce it over every shard
        if error_if_nonfinite:
            check_finite_norm(total, norm_type)  # every rank sees the same total, so all raise together
        torch.nn.utils.clip_grads_with_norm_(_params(optimizer), max_norm, total)
        return total

    @hookimpl
    def weft_strategy_clip_gradients_value(self, fabric, module, optimizer, clip_val):
        for param in _params(optimizer):
            _local(param.grad).clamp_(-clip_val, clip_val)
        return True

    # ------------------------------------------------------------------ checkpoints

    def _agree(self, what: str) -> None:
        self._agreement.enter(what, self._timeout, hint=_SAVE_HINT if what.startswith("fabric.save") else "")

    @hookimpl
    def weft_strategy_save_checkpoint(self, fabric, path, state, filter):
        if self.state_dict_type == "sharded":
            # Rank 0 names the scratch folder and broadcasts it: concurrent saves never share one.
            share = lambda obj: fabric.broadcast(obj, src=0)  # noqa: E731
            _checkpoint.save_sharded(path, state, filter, self._sharded_modules(), self._agree, share)
        else:
            _checkpoint.save_full(path, state, filter, self._sharded_modules(), self._agree)
        return True

    @hookimpl
    def weft_strategy_load_checkpoint(self, fabric, path, state, strict, weights_only):
        return _checkpoint.load(path, state, strict, weights_only, self._sharded_modules(), self._agree)


@contextlib.contextmanager
def _no_gradient_sync(module: nn.Module) -> Iterator[None]:
    """Skip the reduce-scatter of gradients in this backward: each rank accumulates
    unsharded gradients instead (which costs the memory of a full gradient per wrapped unit)."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(module, FSDPModule):
        raise MisuseError("no_backward_sync() takes the model returned by fabric.setup() with the FSDP strategy")
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def _full(tensor: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _local(tensor: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor
