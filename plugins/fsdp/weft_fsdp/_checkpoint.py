"""Saving and loading FSDP state: sharded folders (DCP) and single full files.

Model and optimizer state goes through ``torch.distributed.checkpoint.state_dict``
(``get_*_state_dict`` / ``set_*_state_dict``), which names every entry by the
parameter's fully qualified name. That is what lets a checkpoint written by N ranks
be read by M ranks, or by a plain single-device model.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from weft import checkpoint as wcp
from weft.consolidate import FORMAT, META_FILE, is_sharded_checkpoint, missing_metadata, read_sharded, weights_only_load_planner
from weft.errors import CheckpointError, CheckpointNotFoundError, MisuseError

FilterMap = "dict[str, Callable[[str, Any], bool]] | None"


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kwargs)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def owner_module(optimizer: torch.optim.Optimizer, candidates: list[nn.Module]) -> nn.Module:
    """The module whose parameters ``optimizer`` updates (needed to name its state by FQN)."""
    wanted = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for module in candidates:
        if wanted <= {id(p) for p in module.parameters()}:
            return module
    raise MisuseError(
        "Could not find the model this optimizer belongs to. Save and load the optimizer together with "
        "its model (the one returned by fabric.setup), e.g. fabric.save(path, {'model': model, 'optimizer': optimizer})."
    )


def _reshard(modules: list[nn.Module]) -> None:
    """Put every FSDP unit back in its sharded state.

    A forward without backward (e.g. evaluation under ``no_grad``) leaves the root unit's
    parameters gathered; the optimizer refers to the sharded ones, so resharding first keeps
    the two matching.
    """
    from torch.distributed.fsdp import FSDPModule

    for module in modules:
        for sub in module.modules():
            if isinstance(sub, FSDPModule):
                sub.reshard()


def _split(state: dict[str, Any], known: list[nn.Module]) -> tuple[dict, dict, dict]:
    """Split the user's state into modules, optimizers and everything else."""
    _reshard([v for v in state.values() if isinstance(v, nn.Module)] + list(known))
    modules = {k: v for k, v in state.items() if isinstance(v, nn.Module)}
    optimizers = {k: v for k, v in state.items() if isinstance(v, torch.optim.Optimizer)}
    others = {k: v for k, v in state.items() if k not in modules and k not in optimizers}
    candidates = list(modules.values()) + [m for m in known if all(m is not x for x in modules.values())]
    owners = {k: owner_module(o, candidates) for k, o in optimizers.items()}
    return modules, {k: (o, owners[k]) for k, o in optimizers.items()}, others


def _filtered(sd: dict[str, Any], key: str, filter: Any) -> dict[str, Any]:
    if filter and key in filter:
        return {name: value for name, value in sd.items() if filter[key](name, value)}
    return sd


def _plain_values(others: dict[str, Any], filter: Any) -> dict[str, Any]:
    return wcp.to_state_dicts(others, filter)


# ---------------------------------------------------------------------- save


def scratch_name(path: str) -> str:
    """A fresh hidden folder beside ``path`` for one save to write into.

    Distinct for every save, so two jobs (or two saves) writing the same ``path`` at once never
    share one; it names this host and process so a later save can tell a crashed save's
    leftover (its process is gone) from one still being written.
    """
    import secrets
    import socket

    base = os.path.basename(path)
    return os.path.join(os.path.dirname(path), f".{base}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.partial")


def _remove_stale_scratch(path: str) -> None:
    """Remove scratch folders of saves to ``path`` whose process on this host has died."""
    import re
    import socket

    folder, base = os.path.dirname(path), os.path.basename(path)
    host = socket.gethostname()
    for name in os.listdir(folder):
        if name == f".{base}.partial":  # the single shared name older versions used
            stale = True
        else:
            match = re.fullmatch(re.escape(f".{base}.") + r"(.+)-(\d+)-[0-9a-f]+\.partial", name)
            stale = bool(match) and match.group(1) == host and not _alive(int(match.group(2)))
        if stale:
            full = os.path.join(folder, name)
            shutil.rmtree(full, ignore_errors=True) if os.path.isdir(full) else os.remove(full)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_sharded(
    path: str,
    state: dict[str, Any],
    filter: Any,
    known: list[nn.Module],
    agree: Callable[[str], None],
    share: Callable[[Any], Any] = lambda obj: obj,
) -> None:
    """Every rank writes its shards into a scratch folder beside ``path``; rank 0 adds the metadata,
    the checksum manifest and moves the folder into place once all shards are written.

    :param share: sends rank 0's value to every rank (a broadcast), to agree on the scratch folder.
    """
    from torch.distributed.checkpoint import save as dcp_save
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    path = os.path.abspath(path)
    agree("fabric.save")  # every rank is here before the broadcast below
    partial = share(scratch_name(path) if _rank() == 0 else None)
    if _rank() == 0:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _remove_stale_scratch(path)  # left by saves that crashed; never a valid checkpoint
    modules, optimizers, others = _split(state, known)
    tensors: dict[str, Any] = {}
    for key, module in modules.items():
        tensors[key] = _filtered(get_model_state_dict(module), key, filter)
    for key, (optimizer, owner) in optimizers.items():
        tensors[key] = get_optimizer_state_dict(owner, optimizer)
    meta = None
    if _rank() == 0:
        meta = {
            "format": FORMAT,
            "version": 1,
            "world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "tensor_keys": sorted(tensors),
            "values": _plain_values(others, filter),
        }

    def write_meta() -> None:
        # Runs on rank 0 inside DCP's finish step: a failure here fails the save on every rank.
        wcp.atomic_torch_save(meta, os.path.join(partial, META_FILE))

    writer = wcp.checked_dcp_writer(partial, extra_files=(META_FILE,), on_finish=write_meta)
    try:
        dcp_save(tensors, checkpoint_id=partial, storage_writer=writer, no_dist=not dist.is_initialized())
        if _rank() == 0:
            wcp.commit_folder(partial, path)
    except BaseException as exc:
        converted = None
        if isinstance(exc, Exception) or wcp.is_dcp_failure(exc):
            # Before the scratch folder is removed: the free space left tells a full disk apart
            # when the error itself does not say (errors from other ranks arrive without their cause).
            converted = wcp.disk_full_error(exc, path, os.path.dirname(path), None, lambda: wcp.tensor_bytes(tensors))
            if converted is None and not isinstance(exc, CheckpointError):
                converted = wcp.sharded_error(exc, path, "save")
        if _rank() == 0:
            shutil.rmtree(partial, ignore_errors=True)  # every rank has stopped writing: DCP failed on all
        if converted is not None:
            raise converted from exc
        raise
    agree("fabric.save (commit)")  # no rank returns before the folder is in place


def save_full(path: str, state: dict[str, Any], filter: Any, known: list[nn.Module], agree: Callable[[str], None]) -> None:
    """Gather full state on rank 0 (on the CPU) and write one ``torch.save`` file from there."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    agree("fabric.save")
    modules, optimizers, others = _split(state, known)
    options = _options(full_state_dict=True, cpu_offload=True)
    out: dict[str, Any] = {}
    for key, module in modules.items():
        out[key] = _filtered(get_model_state_dict(module, options=options), key, filter)
    for key, (optimizer, owner) in optimizers.items():
        out[key] = get_optimizer_state_dict(owner, optimizer, options=options)
    out.update(_plain_values(others, filter))
    if _rank() == 0:
        wcp.atomic_torch_save(out, path)
    agree("fabric.save (commit)")


# ---------------------------------------------------------------------- load


def load(
    path: str,
    state: Any,
    strict: bool,
    weights_only: bool,
    known: list[nn.Module],
    agree: Callable[[str], None],
) -> dict[str, Any]:
    """Restore ``state`` from a sharded folder or a full file; return the entries not restored."""
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"No checkpoint at {path!r}")
    agree("fabric.load")
    if isinstance(state, (nn.Module, torch.optim.Optimizer)):  # fabric.load_raw
        _load_raw(path, state, strict, weights_only, known)
        return {}
    if is_sharded_checkpoint(path):
        if state is None:
            return read_sharded(path, weights_only=weights_only)
        return _load_sharded(path, state, strict, weights_only, known)
    if os.path.isdir(path):
        missing_metadata(path)
        raise CheckpointError(f"{path!r} is a folder but not a sharded checkpoint (no DCP .metadata file)")
    checkpoint = wcp.load_file(path, weights_only=weights_only)
    if state is None:
        return dict(checkpoint)
    return _load_full(path, checkpoint, state, strict, known)


def _check_keys(path: str, available: set[str], state: dict[str, Any], strict: bool) -> None:
    missing = [k for k in state if k not in available]
    if strict and missing:
        raise CheckpointError(
            f"The checkpoint {path!r} has no entry for {missing} (it has {sorted(available)}). "
            "Pass strict=False to restore only what is there."
        )


def _load_sharded(path: str, state: dict[str, Any], strict: bool, weights_only: bool, known: list[nn.Module]) -> dict[str, Any]:
    from torch.distributed.checkpoint import load as dcp_load
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    meta_path = os.path.join(path, META_FILE)
    meta = wcp.load_file(meta_path, weights_only=weights_only) if os.path.exists(meta_path) else {}
    values = dict(meta.get("values", {}))
    tensor_keys = set(meta.get("tensor_keys", []))
    _check_keys(path, tensor_keys | set(values), state, strict)
    modules, optimizers, others = _split(state, known)
    modules = {k: v for k, v in modules.items() if k in tensor_keys}
    optimizers = {k: v for k, v in optimizers.items() if k in tensor_keys}
    targets: dict[str, Any] = {k: get_model_state_dict(m) for k, m in modules.items()}
    for key, (optimizer, owner) in optimizers.items():
        targets[key] = get_optimizer_state_dict(owner, optimizer)
    try:
        dcp_load(
            targets,
            checkpoint_id=path,
            storage_reader=wcp.checked_dcp_reader(path),  # each rank verifies the checksums of what it reads
            planner=weights_only_load_planner(weights_only, path=path, allow_partial_load=not strict),
            no_dist=not dist.is_initialized(),
        )
    except CheckpointError:
        raise
    except BaseException as exc:  # DCP's CheckpointException is a BaseException, not an Exception
        if isinstance(exc, Exception) or wcp.is_dcp_failure(exc):
            raise wcp.sharded_error(exc, path, "restore from") from exc
        raise
    for key, module in modules.items():
        _set_model(key, module, targets[key], strict, set_model_state_dict, _options(strict=strict))
    for key, (optimizer, owner) in optimizers.items():
        set_optimizer_state_dict(owner, optimizer, targets[key])
    wcp.restore(values, {k: v for k, v in others.items() if k in values}, strict=False)
    for key in others:
        if key in values and not hasattr(others[key], "load_state_dict"):
            state[key] = values[key]
    return {k: v for k, v in values.items() if k not in state}


def _load_full(path: str, checkpoint: Any, state: dict[str, Any], strict: bool, known: list[nn.Module]) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"Expected {path!r} to hold a dict, found {type(checkpoint).__name__}")
    _check_keys(path, set(checkpoint), state, strict)
    modules, optimizers, others = _split(state, known)
    options = _options(full_state_dict=True, strict=strict)
    for key, module in modules.items():
        if key in checkpoint:
            _set_model(key, module, checkpoint[key], strict, set_model_state_dict, options)
    for key, (optimizer, owner) in optimizers.items():
        if key in checkpoint:
            try:
                set_optimizer_state_dict(owner, optimizer, checkpoint[key], options=_options(full_state_dict=True))
            except (KeyError, ValueError, RuntimeError) as exc:
                raise CheckpointError(
                    f"Could not restore {key!r} from {path!r}: {exc}. Optimizer state must be keyed by parameter "
                    "names, as weft's full and sharded saves write it."
                ) from exc
    wcp.restore(checkpoint, {k: v for k, v in others.items() if k in checkpoint}, strict=False)
    for key in others:
        if key in checkpoint and not hasattr(others[key], "load_state_dict"):
            state[key] = checkpoint[key]
    return {k: v for k, v in checkpoint.items() if k not in state}


def _set_model(key: str, module: nn.Module, sd: dict[str, Any], strict: bool, setter: Callable, options: Any) -> None:
    try:
        result = setter(module, sd, options=options)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"The checkpoint's {key!r} does not match the model being restored: {exc}") from exc
    if strict and result is not None and (result.missing_keys or result.unexpected_keys):
        raise CheckpointError(
            f"The checkpoint's {key!r} does not match the model: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )


def _load_raw(path: str, obj: Any, strict: bool, weights_only: bool, known: list[nn.Module]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    if is_sharded_checkpoint(path):
        raise CheckpointError(f"{path!r} is a sharded checkpoint folder: load it with fabric.load(path, state)")
    sd = wcp.load_file(path, weights_only=weights_only)
    if isinstance(obj, nn.Module):
        _set_model("raw", obj, sd, strict, set_model_state_dict, _options(full_state_dict=True, strict=strict))
    else:
        set_optimizer_state_dict(owner_module(obj, known), obj, sd, options=_options(full_state_dict=True))
