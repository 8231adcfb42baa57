"""weft's collectives: all_reduce, all_gather, broadcasts, barrier, parameter averaging, rank-0 call matching.

Each one is bounded by a timeout and checked across ranks (:mod:`weft.collective_checks`),
on the process group of :mod:`weft.process_group`.
"""

from __future__ import annotations

import ctypes
import datetime
import pickle
from typing import Any

import torch
import torch.distributed as dist

from weft.collective_checks import (
    _REDUCE_CODES,
    _check_same_call,
    _enter,
    _is_timeout,
    _missing_ranks,
    _timeout_error,
    _wait,
)
from weft.collective_settings import _REDUCE_OPS, DEFAULT_COLLECTIVE_TIMEOUT, _seconds
from weft.errors import CollectiveTimeoutError, ConfigurationError, MisuseError
from weft.process_group import _require, is_initialized


def all_reduce(tensor: torch.Tensor, op: str = "sum", timeout: float | datetime.timedelta | None = None) -> torch.Tensor:
    """Reduce ``tensor`` over all ranks into a new tensor.

    :param tensor: a tensor on this process's device (left unchanged).
    :param op: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.
    :param timeout: bound on this call (default: the collective timeout).
    :returns: the reduced tensor; ``"mean"`` of an integer tensor is floating point.
    """
    if op not in _REDUCE_OPS:
        raise ConfigurationError(f"op={op!r} is not one of {', '.join(_REDUCE_OPS)}")
    group = _require()
    out = tensor.detach().clone()
    if op == "mean" and not (out.is_floating_point() or out.is_complex()):
        out = out.to(torch.get_default_dtype())
    if group.world_size == 1:
        return out
    limit = None if timeout is None else _seconds(timeout, "", DEFAULT_COLLECTIVE_TIMEOUT)
    seq = _enter(group, "all_reduce", tensor, reduce_op=op)
    _check_same_call(group, "all_reduce", seq, tensor, _REDUCE_CODES[op], out.device, limit)
    work = dist.all_reduce(out, op=getattr(dist.ReduceOp, _REDUCE_OPS[op]), async_op=True)
    _wait(work, group, "all_reduce", seq, limit)
    if op == "mean":
        out = out / group.world_size
    return out


def all_gather(tensor: torch.Tensor, sync_grads: bool = False, timeout: float | datetime.timedelta | None = None) -> torch.Tensor:
    """Gather ``tensor`` from every rank, stacked along a new first dimension.

    :param tensor: the same shape and dtype on every rank.
    :param sync_grads: keep the result differentiable (gradients flow back to each rank's input).
    :param timeout: bound on this call (``sync_grads`` uses the process group's timeout).
    :returns: a tensor of shape ``(world_size, *tensor.shape)``.
    """
    group = _require()
    if group.world_size == 1:
        return tensor.unsqueeze(0) if sync_grads else tensor.detach().clone().unsqueeze(0)
    tensor = tensor.contiguous()
    limit = None if timeout is None else _seconds(timeout, "", DEFAULT_COLLECTIVE_TIMEOUT)
    seq = _enter(group, "all_gather", tensor, sync_grads=bool(sync_grads))
    _check_same_call(group, "all_gather", seq, tensor, int(bool(sync_grads)), tensor.device, limit)
    if sync_grads:
        from torch.distributed.nn.functional import all_gather as differentiable_all_gather

        try:
            return torch.stack(differentiable_all_gather(tensor))
        except (RuntimeError, dist.DistError) as exc:
            if not _is_timeout(exc):
                raise
            raise _timeout_error(group, "all_gather", seq, group.collective_timeout, exc) from exc
    parts = [torch.empty_like(tensor) for _ in range(group.world_size)]
    work = dist.all_gather(parts, tensor.detach(), async_op=True)
    _wait(work, group, "all_gather", seq, limit)
    return torch.stack(parts)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from rank ``src`` to every rank.

    :param obj: the object (only ``src``'s matters).
    :param src: the sending global rank.
    :returns: ``src``'s object.
    """
    group = _require()
    if not 0 <= src < group.world_size:
        raise ConfigurationError(f"src={src} is not a rank of this world of {group.world_size}")
    if group.world_size == 1:
        return obj
    seq = _enter(group, "broadcast", None, src=src)
    # The pickled bytes travel as a uint8 tensor (length first). torch's broadcast_object_list
    # would do the same but needs NumPy, which neither torch nor weft requires.
    device = torch.device("cpu")
    if group.backend == "nccl":  # nccl moves tensors through the current CUDA device
        device = torch.device("cuda", torch.cuda.current_device())
    payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device) if group.rank == src else None
    # The same-call check carries the payload's size along, so it costs no extra collective here.
    sizes = _check_same_call(group, "broadcast", seq, None, src, device, None, carried=payload.numel() if payload is not None else 0)
    if sizes is not None:
        size = int(sizes[src])
    else:  # debug mode: no check ran, so send the size first
        size_tensor = torch.tensor([payload.numel() if payload is not None else 0], dtype=torch.long, device=device)
        _wait(dist.broadcast(size_tensor, src=src, async_op=True), group, "broadcast", seq, None)
        size = int(size_tensor.item())
    if group.rank != src:
        payload = torch.empty(size, dtype=torch.uint8, device=device)
    _wait(dist.broadcast(payload, src=src, async_op=True), group, "broadcast", seq, None)
    if group.rank == src:
        return obj
    data = payload.cpu().contiguous()
    return pickle.loads(ctypes.string_at(data.data_ptr(), data.numel()))


def broadcast_tensor(tensor: torch.Tensor, src: int = 0, timeout: float | datetime.timedelta | None = None) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s, in place.

    Checked like :func:`all_reduce`: a rank passing another shape or dtype, or another ``src``,
    makes every rank raise :class:`~weft.errors.MisuseValueError`; a rank that never calls it
    makes the others raise :class:`~weft.errors.CollectiveTimeoutError` naming it.

    :param tensor: a tensor on this process's device, of the same shape and dtype on every rank.
    :param src: the sending global rank.
    :param timeout: bound on this call (default: the collective timeout).
    :returns: ``tensor`` itself, now holding ``src``'s values.
    """
    group = _require()
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < group.world_size:
        raise ConfigurationError(f"broadcast_tensor(src={src!r}): src must be a rank of this world of {group.world_size}")
    if group.world_size == 1:
        return tensor
    limit = None if timeout is None else _seconds(timeout, "", DEFAULT_COLLECTIVE_TIMEOUT)
    seq = _enter(group, "broadcast_tensor", tensor, src=src)
    _check_same_call(group, "broadcast_tensor", seq, tensor, src, tensor.device, limit)
    # torch broadcasts contiguous memory only; a view (a slice, a transpose) goes through a copy.
    contiguous = tensor.is_contiguous()
    buffer = tensor.detach() if contiguous else tensor.detach().contiguous()
    _wait(dist.broadcast(buffer, src=src, async_op=True), group, "broadcast_tensor", seq, limit)
    if not contiguous:
        with torch.no_grad():  # the tensor may be a leaf that requires grad
            tensor.copy_(buffer)
    return tensor


def average_parameters(module: torch.nn.Module, timeout: float | datetime.timedelta | None = None) -> None:
    """Replace every parameter of ``module`` by its mean over all ranks, in place.

    For strategies whose replicas train apart and are averaged now and then (Local SGD,
    model soups): the parameters of each device and dtype travel as one flat tensor, through
    :func:`all_reduce` (so with its same-call check, timeout and errors naming ranks). Every rank
    must pass the same architecture. Gradients and buffers are left alone.

    :param module: a module replicated on every rank (not sharded: DTensor parameters raise).
    :param timeout: bound on each all-reduce (default: the collective timeout).
    :raises ConfigurationError: for sharded (DTensor) parameters, whose mean is not a local operation.
    """
    group = _require()
    parameters = list(module.parameters())
    sharded = [name for name, p in module.named_parameters() if hasattr(p, "device_mesh")]
    if sharded:
        raise ConfigurationError(
            f"average_parameters: parameter {sharded[0]!r} is sharded (a DTensor); average the parameters of a "
            "replicated module (DDP, single device), not of an FSDP-sharded one"
        )
    if group.world_size == 1 or not parameters:
        return
    # Grouped by (device, dtype) in the order parameters() gives: the same order on every rank.
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for parameter in parameters:
        groups.setdefault((parameter.device, parameter.dtype), []).append(parameter)
    with torch.no_grad():
        for members in groups.values():
            flat = torch.cat([p.detach().reshape(-1) for p in members])
            mean = all_reduce(flat, "mean", timeout)
            offset = 0
            for p in members:
                p.copy_(mean[offset : offset + p.numel()].view_as(p))
                offset += p.numel()


def barrier(name: str | None = None, timeout: float | datetime.timedelta | None = None) -> None:
    """Wait until every rank reaches this point, naming the ranks that did not.

    :param name: a label shown in errors.
    :param timeout: bound on the wait (default: the collective timeout).
    """
    group = _require()
    if group.world_size == 1:
        return
    limit = group.collective_timeout if timeout is None else _seconds(timeout, "", DEFAULT_COLLECTIVE_TIMEOUT)
    label = f"barrier {name!r}" if name else "barrier"
    seq = _enter(group, "barrier", None, name=name)
    if group.backend == "gloo" or group.store is None and "gloo" in str(group.backend):
        try:
            dist.monitored_barrier(timeout=limit, wait_all_ranks=True)
        except (RuntimeError, dist.DistError) as exc:
            missing = _missing_ranks(group, seq, "barrier")
            known = f"rank(s) {missing} did not arrive; " if missing else ""
            raise CollectiveTimeoutError(
                f"{label} (collective #{seq}) timed out after {limit.total_seconds():.0f}s on rank {group.rank}: "
                f"{known}{str(exc).splitlines()[0]}"
            ) from exc
        return
    if group.store is None:
        dist.barrier()
        return
    # Store-based barrier: works on every backend and knows who is missing.
    store = group.store
    store.set(f"barrier/{seq}/{group.rank}", b"1")
    keys = [f"barrier/{seq}/{r}" for r in range(group.world_size)]
    try:
        store.wait(keys, limit)
    except (RuntimeError, dist.DistError) as exc:
        missing = [r for r in range(group.world_size) if not store.check([keys[r]])]
        raise CollectiveTimeoutError(
            f"{label} (collective #{seq}) timed out after {limit.total_seconds():.0f}s on rank {group.rank}: "
            f"rank(s) {missing} did not arrive"
        ) from exc
    if seq > 2:
        store.delete_key(f"barrier/{seq - 2}/{group.rank}")


def match_rank_zero_call(call: str, key: str, hint: str = "", timeout: float | datetime.timedelta | None = None) -> None:
    """Make sure rank 0 makes a call that only rank 0 acts on, such as writing a checkpoint.

    Rank 0 announces its ``n``-th call with ``key`` through the process group's store and
    returns at once. Any other rank waits, at most ``timeout`` (default: the collective
    timeout), for rank 0's ``n``-th announcement of the same ``key``, and raises
    :class:`~weft.errors.MisuseError` naming the call and rank 0 when it does not come: the
    call would otherwise do nothing on this rank, silently. No collective is involved, so
    ``if fabric.is_global_zero: ...`` (rank 0 alone) and every rank calling both work.
    Without a process group, or with one of a single rank, it does nothing.

    :param call: the call as the user wrote it, for the message (``"fabric.save('x.ckpt')"``).
    :param key: what identifies the call on every rank (e.g. the absolute path written).
    :param hint: what the user should do instead, appended to the message.
    :param timeout: bound on the wait (seconds or ``timedelta``).
    """
    if not is_initialized():
        return
    group = _require()
    if group.world_size == 1:
        return
    limit = group.collective_timeout if timeout is None else _seconds(timeout, "", DEFAULT_COLLECTIVE_TIMEOUT)
    count = group.rank_zero_calls.get(key, 0) + 1
    group.rank_zero_calls[key] = count  # counted per key, so repeated calls pair up in order
    store = group.store
    if store is None:  # a group weft adopted: use torch's store, under weft's own prefix
        try:
            store = dist.PrefixStore("weft/adopted/", dist.distributed_c10d._get_default_store())
        except (AttributeError, RuntimeError, ValueError):
            return  # no store to announce through: nothing can be checked
    announcement = f"rank0-call/{key}/{count}"
    if group.rank == 0:
        store.set(announcement, b"1")
        return
    try:
        store.wait([announcement], limit)
    except (RuntimeError, dist.DistError) as exc:
        raise MisuseError(
            f"{call} was called on rank {group.rank} but rank 0 did not make the same call within "
            f"{limit.total_seconds():g}s" + (f": {hint}" if hint else "")
        ) from exc
