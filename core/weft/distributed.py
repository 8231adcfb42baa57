"""Process-group building blocks for multi-process strategies (DDP, FSDP, third-party ones).

A strategy plugin creates the process group in its ``weft_strategy_setup_environment``
and routes Fabric's collectives through the functions below, so every strategy gets
the same bounded waits and the same readable errors.

Public API
----------

``init_process_group(fabric, backend=None, timeout=None, collective_timeout=None, debug=None) -> str``
    Create the default ``torch.distributed`` process group for ``fabric``'s ranks and
    return the backend used. The backend, when not given, is asked from the
    accelerator (``weft_accelerator_process_group_backend``); the main address and
    port come from the cluster environment (``weft_environment_main_address`` /
    ``_port``). The rendezvous store is a ``TCPStore`` hosted by rank 0 (or by the
    elastic agent under ``weft run``/torchrun); when the main address is a loopback
    address it listens on loopback only. gloo's transport does too on a single node (main
    address on loopback, or ``LOCAL_WORLD_SIZE`` equal to the world size): weft sets
    ``GLOO_SOCKET_IFNAME`` to the loopback interface; on several nodes, to the interface
    that routes to the main address. A ``GLOO_SOCKET_IFNAME`` you set is left alone.
    ``timeout`` bounds the rendezvous (default
    ``WEFT_INIT_TIMEOUT`` seconds, else 1800); ``collective_timeout`` bounds every
    later collective, DDP's gradient all-reduce included (default
    ``WEFT_COLLECTIVE_TIMEOUT`` seconds, else 600).
``destroy_process_group() -> None``
    Tear the group down (no-op when none exists).
``is_initialized() -> bool``, ``get_rank() -> int``, ``get_world_size() -> int``
    Small queries that also work before initialisation (rank 0 of 1).
``all_reduce(tensor, op="sum", timeout=None) -> Tensor``
    A new tensor reduced over all ranks; ``op`` is ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.
``all_gather(tensor, sync_grads=False, timeout=None) -> Tensor``
    ``(world_size, *tensor.shape)``; differentiable with ``sync_grads=True``.
``broadcast_object(obj, src=0) -> Any``
    The picklable ``obj`` of rank ``src``, on every rank.
``broadcast_tensor(tensor, src=0, timeout=None) -> Tensor``
    Overwrite ``tensor`` in place, on every rank, with rank ``src``'s (same shape and dtype
    everywhere); returns it. For plugins that ship tensors without pickling them.
``average_parameters(module, timeout=None) -> None``
    Replace each parameter of ``module``, in place on every rank, by its mean over the ranks (one
    all-reduce per device and dtype). For strategies that let replicas drift and average them now
    and then (Local SGD and the like); not for sharded (DTensor) parameters.
``barrier(name=None, timeout=None) -> None``
    Wait for every rank. With gloo this is ``monitored_barrier``, which names the
    ranks that did not arrive; other backends use a store-based barrier that does too.
``collective_timeout(value=None, name="timeout") -> timedelta``
    ``value`` (seconds or ``timedelta``), else ``WEFT_COLLECTIVE_TIMEOUT``, else 600 s; zero,
    negative, NaN, infinite, boolean or non-numeric values raise
    :class:`~weft.errors.ConfigurationError` naming the argument (or variable) and the value.
    (``WEFT_INIT_TIMEOUT`` is checked the same way.) For plugins that bound waits of their own.
``match_rank_zero_call(call, key, hint="", timeout=None) -> None``
    For calls only rank 0 acts on (a single-file checkpoint save): rank 0 announces its
    ``n``-th call with ``key`` through the store without waiting; any other rank waits, at
    most the collective timeout, for that announcement and raises
    :class:`~weft.errors.MisuseError` naming the call and rank 0 when it does not come. So a
    call made on rank 1 alone fails loudly instead of doing nothing. Adds no collective.
``CollectiveHooks``
    A base class for strategy plugins: implements the ``all_reduce``, ``all_gather``,
    ``broadcast`` and ``barrier`` strategy hooks with the functions above.
``set_debug(enabled) -> None``
    Debug mode (also ``WEFT_DEBUG_COLLECTIVES=1``): before each collective above, the
    ranks exchange what they are about to call (operation, shape, dtype, call site)
    through the store. A mismatch raises :class:`~weft.errors.MisuseError` on every rank
    with each rank's call listed, instead of hanging or silently mixing data.

Every ``all_reduce``, ``all_gather`` and ``broadcast_object`` first checks, outside debug mode
too, that all ranks make the same call: the ranks all_gather a few int64 numbers (operation,
reduce op / ``sync_grads`` / ``src``, dtype, shape). A rank passing another shape or dtype (an
uneven last batch), another reduce op or source rank, or another collective, makes every rank
raise :class:`~weft.errors.MisuseValueError` naming each rank's dtype and shape, where gloo
would abort the process or mix the data. It costs one small collective per call;
``WEFT_CHECK_COLLECTIVES=0`` turns it off (every rank must agree).

A collective that does not complete in time raises
:class:`~weft.errors.CollectiveTimeoutError`, naming the ranks that never arrived
when the store can tell (each weft collective leaves an arrival mark in it).

.. versionadded:: 0.1
"""

from __future__ import annotations

import ctypes
import datetime
import math
import numbers
import os
import pickle
import socket
import sys
import time
import traceback
import zlib
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from weft.errors import CollectiveTimeoutError, ConfigurationError, MisuseError, MisuseValueError
from weft.hookspecs import hookimpl
from weft.transport import choose_transport_interface
from weft.transport import is_loopback as _is_loopback

if TYPE_CHECKING:
    from weft.fabric import Fabric

__all__ = [
    "init_process_group",
    "destroy_process_group",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "all_reduce",
    "all_gather",
    "broadcast_object",
    "broadcast_tensor",
    "average_parameters",
    "barrier",
    "set_debug",
    "match_rank_zero_call",
    "collective_timeout",
    "CollectiveHooks",
    "DEFAULT_INIT_TIMEOUT",
    "DEFAULT_COLLECTIVE_TIMEOUT",
]

INIT_TIMEOUT_ENV = "WEFT_INIT_TIMEOUT"
COLLECTIVE_TIMEOUT_ENV = "WEFT_COLLECTIVE_TIMEOUT"
DEBUG_ENV = "WEFT_DEBUG_COLLECTIVES"
#: ``0`` turns off the same-call check of all_reduce/all_gather/broadcast (one small collective per call).
CHECK_ENV = "WEFT_CHECK_COLLECTIVES"
#: Rendezvous: every process must have started and reached the store within this time.
DEFAULT_INIT_TIMEOUT = datetime.timedelta(seconds=1800)
#: After setup: one collective (gradient all-reduce included) may wait this long.
DEFAULT_COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=600)

_REDUCE_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


class _Group:
    """What weft keeps about the process group it created."""

    def __init__(
        self, store: Any, rank: int, world_size: int, backend: str, collective_timeout: datetime.timedelta, debug: bool,
        check_calls: bool = True,
    ) -> None:
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.backend = backend
        self.collective_timeout = collective_timeout
        self.debug = debug
        self.seq = 0  # collectives called through this module, same count on every rank
        self.rank_zero_calls: dict[str, int] = {}  # match_rank_zero_call: calls made so far, per key
        self.check_calls = check_calls  # the same-call check (see below)


_group: _Group | None = None


# The longest wait a timedelta can hold (about 2.7 million years): anything above is a typo.
_MAX_SECONDS = datetime.timedelta.max.total_seconds()


def _seconds(value: Any, env: str, default: datetime.timedelta, name: str = "timeout") -> datetime.timedelta:
    """``value`` (seconds or a timedelta) as a timedelta; ``None`` reads ``env``, then ``default``.

    Zero, negative, NaN, infinite, boolean and non-numeric values raise
    :class:`~weft.errors.ConfigurationError` naming ``name`` (or ``env``) and the value: a
    timeout of 0 or NaN would fail every collective, and an infinite one is the hang it guards.
    """
    if value is None:
        text = os.environ.get(env, "") if env else ""
        if not text.strip():
            return default
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS):
            raise ConfigurationError(
                f"{env}={text!r} is not a positive, finite number of seconds; set it to e.g. {default.total_seconds():.0f}, or unset it"
            )
        return datetime.timedelta(seconds=seconds)
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS):
        raise ConfigurationError(
            f"{name}={value!r} must be a positive, finite number of seconds or a positive datetime.timedelta"
        )
    return value if isinstance(value, datetime.timedelta) else datetime.timedelta(seconds=seconds)


def collective_timeout(value: float | datetime.timedelta | None = None, name: str = "timeout") -> datetime.timedelta:
    """The bound on one collective: ``value`` if given, else ``WEFT_COLLECTIVE_TIMEOUT``, else 600 s.

    :param value: seconds or a ``timedelta``, e.g. a strategy's ``timeout=`` argument.
    :param name: the argument's name, for the error message.
    :raises ConfigurationError: zero, negative, NaN, infinite, boolean or non-numeric values,
        naming ``name`` (or the variable) and the value.
    """
    return _seconds(value, COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT, name)


def _flag_from_env(variable: str, default: bool) -> bool:
    """An on/off environment variable; anything but the usual spellings is an error naming it."""
    text = os.environ.get(variable, "")
    value = text.strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{variable}={text!r} is not understood: set it to 1 (on) or 0 (off), or unset it")


def _debug_from_env() -> bool:
    return _flag_from_env(DEBUG_ENV, default=False)


def _loopback_listener(host: str, port: int) -> int:
    """A listening socket bound to ``host`` only; the store takes ownership of its descriptor."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1" if host == "localhost" else host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"rank 0 cannot listen on {host}:{port} for the process group's store: {exc}") from exc
    return sock.detach()


def _create_store(address: str, port: int, rank: int, world_size: int, timeout: datetime.timedelta) -> Any:
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # The elastic agent (weft run / torchrun) already hosts the store at MASTER_PORT.
        return dist.TCPStore(address, port, world_size, False, timeout=timeout)
    if rank == 0 and _is_loopback(address):
        # TCPStore alone listens on every interface; single-node jobs keep it on loopback.
        fd = _loopback_listener(address, port)
        return dist.TCPStore(address, port, world_size, True, timeout=timeout, wait_for_workers=False, master_listen_fd=fd)
    return dist.TCPStore(address, port, world_size, rank == 0, timeout=timeout, wait_for_workers=False)


def init_process_group(
    fabric: Fabric,
    backend: str | None = None,
    timeout: float | datetime.timedelta | None = None,
    collective_timeout: float | datetime.timedelta | None = None,
    debug: bool | None = None,
) -> str:
    """Create the default process group for ``fabric``'s ranks.

    :param fabric: the Fabric being set up (ranks, device and environment known).
    :param backend: ``"gloo"``, ``"nccl"``, ...; ``None`` asks the accelerator.
    :param timeout: bound on the rendezvous (seconds or ``timedelta``).
    :param collective_timeout: bound on each collective afterwards.
    :param debug: check that all ranks call matching collectives (default: ``WEFT_DEBUG_COLLECTIVES``).
    :returns: the backend name.
    """
    global _group
    init_timeout = _seconds(timeout, INIT_TIMEOUT_ENV, DEFAULT_INIT_TIMEOUT, "timeout")
    after = _seconds(collective_timeout, COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT, "collective_timeout")
    debug = _debug_from_env() if debug is None else bool(debug)
    check_calls = _flag_from_env(CHECK_ENV, default=True)  # read before anything is created
    if backend is None:
        backend = fabric.hook.weft_accelerator_process_group_backend(device=fabric.device)
    if backend is None:
        raise ConfigurationError(
            f"accelerator {fabric.accelerator_name!r} names no process group backend; pass process_group_backend= to the strategy"
        )
    rank, world_size = fabric.global_rank, fabric.world_size
    if dist.is_initialized():
        # Created by the user (or another library) before weft: adopt it as it is.
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise ConfigurationError(
                f"a process group already exists as rank {dist.get_rank()} of {dist.get_world_size()}, "
                f"but this Fabric is rank {rank} of {world_size}"
            )
        _group = _Group(None, rank, world_size, dist.get_backend(), after, debug, check_calls)
        _watch_for_uncaught_exceptions()
        return _group.backend
    address = fabric.hook.weft_environment_main_address()
    port = fabric.hook.weft_environment_main_port()
    if address is None or port is None:
        raise ConfigurationError(f"the {fabric.environment_name} environment gave no main address/port")
    try:
        store = _create_store(str(address), int(port), rank, world_size, init_timeout)
    except (RuntimeError, dist.DistError) as exc:
        raise CollectiveTimeoutError(
            f"rank {rank} could not reach the process group's store at {address}:{port} within "
            f"{init_timeout.total_seconds():.0f}s ({exc}). Is rank 0 running, and is the address right?"
        ) from exc
    choose_transport_interface(str(address), int(port), world_size)
    # Each restart of an elastic job gets fresh keys in a possibly shared store.
    prefixed = dist.PrefixStore(f"weft/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)
    try:
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=init_timeout)
    except (RuntimeError, dist.DistError) as exc:
        raise CollectiveTimeoutError(
            f"rank {rank}: the {backend} process group of {world_size} processes did not form within "
            f"{init_timeout.total_seconds():.0f}s: {exc}"
        ) from exc
    _group = _Group(prefixed, rank, world_size, backend, after, debug, check_calls)
    _watch_for_uncaught_exceptions()
    if after != init_timeout:
        try:
            dist.distributed_c10d._set_pg_timeout(after)
        except (AttributeError, ValueError, RuntimeError):  # older torch: keep the init timeout
            pass
    return backend


_uncaught_exception = False


def _watch_for_uncaught_exceptions() -> None:
    """Note an uncaught exception (Python calls the hook before exit handlers run)."""
    previous = sys.excepthook
    if getattr(previous, "_weft_watch", False):
        return

    def hook(*exc_info: Any) -> None:
        global _uncaught_exception
        _uncaught_exception = True
        from weft import lifecycle

        lifecycle.note_exception(exc_info[1])  # what the other ranks are told at the meeting at exit
        previous(*exc_info)

    hook._weft_watch = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def destroy_process_group(drain_timeout: float = 10.0) -> None:
    """Destroy the default process group, if one exists; never keeps an exiting process alive.

    Every rank first meets the others through the store (see :mod:`weft.lifecycle`): it says
    how it is ending and, when that is cleanly, waits up to ``drain_timeout`` seconds for
    every rank to say the same. Only then does it run the backend's drain barrier and destroy
    the group. By the time that barrier completes, the backend's worker threads have let go of
    the last gradient all-reduce of the run; without it, a worker thread can drop that work
    object during interpreter shutdown, and because the object holds Python state captured in
    backward, the process aborts with "terminate called without an active exception".

    When a rank is not ending (it may be waiting for this one in a collective) or any rank is
    ending badly, no backend operation is started and the group is left behind undestroyed:
    destroying a gloo group joins threads that wait out the collective timeout, so this process
    and its sockets would stay alive and the peers would wait up to that timeout. Left behind,
    the process exits at once with its own status and the peers' collectives fail fast.
    """
    global _group
    from weft import lifecycle

    group, _group = _group, None
    if not (dist.is_available() and dist.is_initialized()) or lifecycle.left_behind():
        return
    if group is None or group.world_size == 1:
        dist.destroy_process_group()
        return
    clean = not _uncaught_exception and lifecycle.ending_is_clean()
    store = group.store if group.store is not None else _exit_store()
    met = None if store is None else lifecycle.announce_and_meet(store, group.rank, group.world_size, drain_timeout if clean else 0)
    if not (clean and met and all(m.get("cause") == "clean" for m in met.values())):
        lifecycle.leave_behind(dist.group.WORLD)
        return
    try:
        work = dist.barrier(async_op=True)
        work.wait(datetime.timedelta(seconds=drain_timeout))
        # The barrier work holds the earlier works. Keep our reference a moment so the
        # backend's thread lets go first: the last release then happens here, under the GIL.
        time.sleep(0.05)
        del work
    except Exception:  # noqa: BLE001 - a peer left after all: its barrier may still be running here
        lifecycle.leave_behind(dist.group.WORLD)
        return
    dist.destroy_process_group()


def _exit_store() -> Any:
    """A store for the meeting at exit, for a process group created outside weft (``None`` if none)."""
    try:
        return dist.PrefixStore("weft/exit/", dist.distributed_c10d._get_default_store())
    except Exception:  # noqa: BLE001 - no store: the meeting fails and the group is left behind
        return None


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def set_debug(enabled: bool) -> None:
    """Turn collective checking on or off for this process (all ranks must agree)."""
    _require().debug = bool(enabled)


def _require() -> _Group:
    if _group is None:
        if is_initialized():  # created outside weft: work with it, without a store
            globals()["_group"] = _Group(
                None, dist.get_rank(), dist.get_world_size(), dist.get_backend(), collective_timeout(), _debug_from_env(),
                _flag_from_env(CHECK_ENV, default=True),
            )
            return _group  # type: ignore[return-value]
        raise MisuseError("no process group: weft.distributed.init_process_group(fabric) must run first")
    return _group


# ---------------------------------------------------------------------- arrival marks and checks


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


# ---------------------------------------------------------------------- collectives


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


class CollectiveHooks:
    """Strategy hook implementations that route Fabric's collectives through this module.

    A strategy built on ``torch.distributed`` inherits them, and with them the bounded
    waits and the errors naming missing ranks::

        class MyStrategy(weft.distributed.CollectiveHooks):
            ...

    .. versionadded:: 0.1
    """

    @hookimpl
    def weft_strategy_all_reduce(self, fabric: Any, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        return all_reduce(tensor, reduce_op)

    @hookimpl
    def weft_strategy_all_gather(self, fabric: Any, tensor: torch.Tensor, sync_grads: bool) -> torch.Tensor:
        return all_gather(tensor, sync_grads=sync_grads)

    @hookimpl
    def weft_strategy_broadcast(self, fabric: Any, obj: Any, src: int) -> list[Any]:
        return [broadcast_object(obj, src)]

    @hookimpl
    def weft_strategy_barrier(self, fabric: Any, name: str | None) -> bool:
        barrier(name)
        return True
