"""Turning the strategy's options into FSDP2 calls: device mesh, mixed-precision and offload
policies, and the order in which activation checkpointing and ``fully_shard`` are applied."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from weft.errors import ConfigurationError

SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD")

#: A module policy: a set of module classes, or ``callable(module) -> bool``.
ModulePolicy = "set[type[nn.Module]] | Callable[[nn.Module], bool] | None"


def policy_matcher(policy: Any, option: str) -> Callable[[nn.Module], bool] | None:
    """Turn a module policy into ``matches(module) -> bool`` (``None`` when no module matches)."""
    if policy is None:
        return None
    if isinstance(policy, type) and issubclass(policy, nn.Module):
        policy = {policy}
    if isinstance(policy, (set, frozenset, list, tuple)):
        classes = tuple(policy)
        bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, nn.Module))]
        if bad:
            raise ConfigurationError(f"{option} must hold nn.Module classes; got {bad!r}")
        if not classes:
            return None
        return lambda module: isinstance(module, classes)
    if callable(policy):
        return lambda module: bool(policy(module))
    raise ConfigurationError(
        f"{option}={policy!r}: pass a set of module classes (e.g. {{nn.TransformerDecoderLayer}}) "
        "or a function taking a module and returning True for those to select"
    )


def normalize_sharding_strategy(value: Any) -> str:
    """Accept a name in any case, or torch's ``ShardingStrategy`` enum, and return the canonical name."""
    name = getattr(value, "name", value)
    if not isinstance(name, str) or name.upper() not in SHARDING_STRATEGIES:
        raise ConfigurationError(f"sharding_strategy={value!r} is not one of {', '.join(SHARDING_STRATEGIES)}")
    return name.upper()


def build_mesh(device_type: str, world_size: int, num_nodes: int, strategy: str, shape: tuple[int, int] | None) -> Any:
    """The device mesh ``fully_shard`` runs on.

    FULL_SHARD and SHARD_GRAD_OP shard over one dimension of all ranks. HYBRID_SHARD
    uses a 2-D mesh ``(replicate, shard)``, by default one shard group per node.
    NO_SHARD is the 2-D mesh ``(world_size, 1)``: every rank keeps whole parameters.
    """
    from torch.distributed.device_mesh import init_device_mesh

    if strategy in ("FULL_SHARD", "SHARD_GRAD_OP"):
        if shape is not None:
            raise ConfigurationError(f"device_mesh={shape!r} is only used with sharding_strategy='HYBRID_SHARD'")
        return init_device_mesh(device_type, (world_size,), mesh_dim_names=("shard",))
    if strategy == "NO_SHARD":
        replicate, shard = world_size, 1
    else:
        replicate, shard = shape if shape is not None else (num_nodes, world_size // max(num_nodes, 1))
    if replicate * shard != world_size:
        raise ConfigurationError(
            f"HYBRID_SHARD mesh {replicate} x {shard} does not cover the {world_size} processes; pass "
            "device_mesh=(replicas, shard_size) with replicas * shard_size == world size"
        )
    return init_device_mesh(device_type, (replicate, shard), mesh_dim_names=("replicate", "shard"))


def mixed_precision_policy(dtypes: Any) -> Any:
    """Map the precision plugin's :class:`~weft.records.PrecisionDtypes` onto FSDP2's policy.

    Parameters are kept in ``dtypes.param`` for the optimizer; when the compute dtype
    differs, FSDP all-gathers them in ``dtypes.compute``, and gradients are reduced in
    ``dtypes.reduce``. With no dtypes (a precision without the hook) nothing changes.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if dtypes is None:
        return MixedPrecisionPolicy()
    param, compute, reduce = dtypes.param, dtypes.compute, dtypes.reduce
    param_dtype = compute if compute is not None and compute != param else None
    reference = param_dtype or param
    reduce_dtype = reduce if reduce is not None and reduce != reference else None
    return MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)


def offload_policy(cpu_offload: Any, device: torch.device) -> Any:
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

    if isinstance(cpu_offload, OffloadPolicy):
        return cpu_offload
    if cpu_offload is True:
        # Pinned memory needs an accelerator; on a CPU-only run there is nothing to copy to.
        return CPUOffloadPolicy(pin_memory=device.type != "cpu")
    if cpu_offload in (False, None):
        return OffloadPolicy()
    raise ConfigurationError(f"cpu_offload={cpu_offload!r}: pass True, False or a torch.distributed.fsdp.OffloadPolicy")


def apply(
    module: nn.Module,
    *,
    mesh: Any,
    wrap: Callable[[nn.Module], bool] | None,
    checkpointing: Callable[[nn.Module], bool] | None,
    reshard_after_forward: Any,
    mp_policy: Any,
    offload: Any,
) -> list[nn.Module]:
    """Apply activation checkpointing, then ``fully_shard`` to each module the wrap policy selects
    (innermost first), then to the root. Returns the sharded modules, root last."""
    from torch.distributed.fsdp import fully_shard

    if checkpointing is not None:
        from torch.distributed._composable import checkpoint

        # The composable form hooks into forward without renaming parameters, so
        # state-dict keys stay the user's.
        for sub in list(module.modules()):
            if checkpointing(sub):
                checkpoint(sub)
    kwargs = {"mesh": mesh, "mp_policy": mp_policy, "offload_policy": offload}
    if reshard_after_forward is not None:
        kwargs["reshard_after_forward"] = reshard_after_forward
    sharded = []
    if wrap is not None:
        # Reversed pre-order visits every module after all of its descendants: the
        # bottom-up order fully_shard needs for nested units.
        for sub in reversed(list(module.modules())):
            if sub is not module and wrap(sub):
                fully_shard(sub, **kwargs)
                sharded.append(sub)
    fully_shard(module, **kwargs)
    sharded.append(module)
    return sharded


def has_meta_tensors(module: nn.Module) -> bool:
    return any(t.is_meta for t in _tensors(module))


def materialize(module: nn.Module, device: torch.device) -> None:
    """Allocate the local shards of a module built on the meta device and initialise them.

    Only this rank's shard of each parameter is allocated. Submodules are
    initialised with their ``reset_parameters()`` (or ``_reset_parameters()``).
    """
    module.to_empty(device=device)
    with torch.no_grad():
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
            if callable(reset):
                reset()


def _tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()
