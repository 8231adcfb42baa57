"""The checks around each weft collective: arrival marks, bounded waits, and the same-call check.

Every collective leaves an arrival mark in the store (``_enter``), so a timeout can name the
ranks that never arrived (``_wait``, ``_timeout_error``); in debug mode the ranks also compare
their calls through the store. Outside debug mode, ``_check_same_call`` all-gathers a small
header per call so a rank passing another shape, dtype or collective makes every rank raise.
"""

from __future__ import annotations

import datetime
import os
import pickle
import traceback
import zlib
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from weft.collective_settings import _REDUCE_OPS
from weft.errors import CollectiveTimeoutError, MisuseError, MisuseValueError

if TYPE_CHECKING:
    from weft.process_group import _Group


def _call_site() -> str:
    """The first frame outside weft and torch: where the user called the collective."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        path = frame.filename.replace("\\", "/")
        if "/weft/" in path or "/weft_" in path or "/torch/" in path or "pluggy" in path:
            continue
        return f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return "?"


def _describe(signature: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in signature.items() if k not in ("op", "site")]
    return f"{signature['op']}({', '.join(parts)}) at {signature['site']}"


def _enter(group: _Group, op: str, tensor: torch.Tensor | None = None, **details: Any) -> int:
    """Count this collective, leave an arrival mark, and in debug mode compare every rank's call."""
    group.seq += 1
    seq = group.seq
    if group.store is None:
        return seq
    if not group.debug:
        group.store.set(f"arrive/{group.rank}", f"{seq}:{op}")
        return seq
    signature: dict[str, Any] = {"op": op}
    if tensor is not None:
        signature["shape"] = tuple(tensor.shape)
        signature["dtype"] = str(tensor.dtype).replace("torch.", "")
    signature.update(details)
    signature["site"] = _call_site()
    store = group.store
    store.set(f"sig/{seq}/{group.rank}", pickle.dumps(signature))
    store.set(f"arrive/{group.rank}", f"{seq}:{op}")
    keys = [f"sig/{seq}/{r}" for r in range(group.world_size)]
    try:
        store.wait(keys, group.collective_timeout)
    except (RuntimeError, dist.DistError) as exc:
        present = [r for r in range(group.world_size) if store.check([keys[r]])]
        missing = [r for r in range(group.world_size) if r not in present]
        raise CollectiveTimeoutError(
            f"{op} (collective #{seq}) timed out after {group.collective_timeout.total_seconds():.0f}s on rank "
            f"{group.rank}: rank(s) {missing} never called it (they are busy elsewhere, stuck, or skipped this call)."
        ) from exc
    calls = {r: pickle.loads(store.get(keys[r])) for r in range(group.world_size)}
    if seq > 2:
        store.delete_key(f"sig/{seq - 2}/{group.rank}")  # everyone has read it by now
    reference = {k: v for k, v in calls[0].items() if k != "site"}
    if any({k: v for k, v in c.items() if k != "site"} != reference for c in calls.values()):
        lines = "\n".join(f"  rank {r}: {_describe(c)}" for r, c in sorted(calls.items()))
        raise MisuseError(
            f"Collective #{seq} does not match across ranks (WEFT_DEBUG_COLLECTIVES is on); every rank must call the "
            f"same collective with the same shape and dtype:\n{lines}"
        )
    return seq


def _arrivals(group: _Group) -> dict[int, tuple[int, str]] | None:
    """Each rank's latest arrival mark: (collective number, operation); ``None`` when the store cannot tell."""
    if group.store is None:
        return None
    try:
        marks = {}
        for r in range(group.world_size):
            key = f"arrive/{r}"
            value = group.store.get(key).decode() if group.store.check([key]) else "0:"
            count, _, op = value.partition(":")
            marks[r] = (int(count), op)
        return marks
    except (RuntimeError, dist.DistError, ValueError):
        return None


def _missing_ranks(group: _Group, seq: int, op: str | None = None) -> list[int] | None:
    """Ranks that have not reached collective ``seq`` as the operation ``op``; ``None`` when unknown."""
    marks = _arrivals(group)
    if marks is None:
        return None
    return [r for r, (count, their_op) in marks.items() if count < seq or (op and count == seq and their_op != op)]


def _timeout_error(group: _Group, op: str, seq: int, timeout: datetime.timedelta, exc: BaseException) -> CollectiveTimeoutError:
    marks = _arrivals(group)
    missing = _missing_ranks(group, seq, op)
    if missing:
        where = ", ".join(
            f"rank {r} is at collective #{marks[r][0]} ({marks[r][1] or 'none yet'})" for r in missing
        )
        who = f"rank(s) {missing} never reached it ({where})"
    elif missing == []:
        who = "every rank reached it, so a peer failed or a link broke during the exchange"
    else:
        who = "the store could not tell which ranks are missing"
    from weft import lifecycle

    ended = lifecycle.describe_peer_exits()
    if ended:  # a peer that left is the cause, whatever the backend's words
        who = f"{ended}, so it will not come"
    return CollectiveTimeoutError(
        f"{op} (collective #{seq}) did not complete within {timeout.total_seconds():.0f}s on rank {group.rank}: "
        f"{who}. Cause: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    )


def _wait(work: Any, group: _Group, op: str, seq: int, timeout: datetime.timedelta | None) -> None:
    timeout = timeout or group.collective_timeout
    try:
        work.wait(timeout)
    except (RuntimeError, dist.DistError) as exc:
        if not _is_timeout(exc):
            raise  # a failure of the call itself, not of waiting: keep its own type and message
        raise _timeout_error(group, op, seq, timeout, exc) from exc


def _is_timeout(exc: BaseException) -> bool:
    """Whether a backend error means waiting ran out or a peer went away (rather than a local bug)."""
    text = str(exc).lower()
    return isinstance(exc, (TimeoutError, getattr(dist, "DistNetworkError", ()) or ())) or any(
        word in text for word in ("timed out", "timeout", "connection", "closed", "reset by peer", "broken pipe")
    )


# ---------------------------------------------------------------------- same-call check
#
# Before each all_reduce / all_gather / broadcast (outside debug mode), the ranks all_gather a
# small fixed-size int64 header describing their call. A rank that passes another shape or
# dtype would otherwise make gloo abort the process (SIGABRT) or mix bytes of different
# tensors; with the headers every rank sees the same disagreement and raises the same error.

_HEADER_OPS = {"all_reduce": 1, "all_gather": 2, "broadcast": 3, "broadcast_tensor": 4}
_HEADER_DIMS = 6  # dimensions carried exactly; any beyond fold into one number
_COMPARED = 5 + _HEADER_DIMS  # op, detail, dtype, ndim, folded tail, dims: must agree
_HEADER_SIZE = _COMPARED + 1  # then one number the call carries along (broadcast: its size)
_REDUCE_CODES = {name: i for i, name in enumerate(_REDUCE_OPS, start=1)}


def _dtype_code(dtype: torch.dtype) -> int:
    return zlib.crc32(str(dtype).encode())  # the same on every rank, whatever the torch build


def _header(op: str, detail: int, tensor: torch.Tensor | None, device: torch.device, carried: int) -> torch.Tensor:
    shape = tuple(tensor.shape) if tensor is not None else ()
    tail = 0
    for size in shape[_HEADER_DIMS:]:
        tail = (tail * 1_000_003 + size + 1) % (1 << 61)
    dims = list(shape[:_HEADER_DIMS]) + [-1] * (_HEADER_DIMS - min(len(shape), _HEADER_DIMS))
    dtype = _dtype_code(tensor.dtype) if tensor is not None else 0
    values = [_HEADER_OPS[op], detail, dtype, len(shape), tail, *dims, carried]
    return torch.tensor(values, dtype=torch.int64, device=device)


def _read_header(row: list[int]) -> dict[str, Any]:
    op = next(name for name, code in _HEADER_OPS.items() if code == row[0]) if row[0] in _HEADER_OPS.values() else f"op#{row[0]}"
    ndim = row[3]
    dims = [str(d) for d in row[5 : 5 + min(ndim, _HEADER_DIMS)]] + ["..."] * (ndim > _HEADER_DIMS)
    shape = "(" + ", ".join(dims) + ("," if ndim == 1 else "") + ")"
    names = {_dtype_code(v): str(v).replace("torch.", "") for v in vars(torch).values() if isinstance(v, torch.dtype)}
    dtype = names.get(row[2], f"dtype#{row[2]}")
    return {"op": op, "detail": row[1], "shape": shape, "dtype": dtype, "key": tuple(row[2:_COMPARED])}


def _detail_text(op: str, detail: int) -> str:
    if op == "all_reduce":
        return f"op={next((n for n, c in _REDUCE_CODES.items() if c == detail), detail)!r}"
    if op == "all_gather":
        return f"sync_grads={bool(detail)}"
    return f"src={detail}"


def _mismatch_message(op: str, rows: list[list[int]]) -> str:
    calls = [_read_header(row) for row in rows]
    ranks = range(len(calls))
    if len({c["op"] for c in calls}) > 1:
        listed = ", ".join(f"rank {r} calls {c['op']}({c['dtype']} {c['shape']}, {_detail_text(c['op'], c['detail'])})" for r, c in zip(ranks, calls))
        return f"collective mismatch: {listed}; every rank must make the same collective calls in the same order"
    if len({c["detail"] for c in calls}) > 1:
        listed = ", ".join(f"rank {r} passes {_detail_text(op, c['detail'])}" for r, c in zip(ranks, calls))
        return f"{op}: {listed}; pass the same value on every rank"
    listed = ", ".join(f"rank {r} passes {c['dtype']} {c['shape']}" for r, c in zip(ranks, calls))
    if len({c["dtype"] for c in calls}) > 1 and len({c["key"][1:] for c in calls}) == 1:
        return f"{op}: {listed}; cast to a common dtype first (fabric.{op} needs the same dtype on every rank)"
    return f"{op}: {listed}; pad to a common shape first (fabric.{op} needs the same shape and dtype on every rank)"


# torch 2.13 renamed all_gather_into_tensor (and warns on the old name); older torch has only that.
_gather_into_tensor = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _check_same_call(group: _Group, op: str, seq: int, tensor: torch.Tensor | None, detail: int,
                     device: torch.device, timeout: datetime.timedelta | None, carried: int = 0) -> torch.Tensor | None:
    """Raise :class:`~weft.errors.MisuseValueError` on every rank when the ranks' calls differ.

    Costs one all_gather of a few int64 numbers. ``carried`` travels along uncompared, and
    every rank's comes back (``None`` in debug mode, which skips the check: it has already
    compared every rank's call, and its call site, through the store).
    """
    if group.debug or not group.check_calls:
        return None
    mine = _header(op, detail, tensor, device, carried)
    everyone = torch.empty(group.world_size * _HEADER_SIZE, dtype=torch.int64, device=device)
    _wait(_gather_into_tensor(everyone, mine, async_op=True), group, op, seq, timeout)
    rows = everyone.view(group.world_size, _HEADER_SIZE)
    compared = rows[:, :_COMPARED]
    if bool((compared == compared[0]).all()):
        return rows[:, _COMPARED]
    raise MisuseValueError(_mismatch_message(op, rows.tolist()))
