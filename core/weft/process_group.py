"""weft's process group: creating it, tearing it down, and the state weft keeps about it.

``init_process_group`` creates (or adopts) the default ``torch.distributed`` group, with its
rendezvous store kept on loopback for a one-node job; ``destroy_process_group`` meets the other
ranks before destroying it. ``_group`` (what weft keeps about the group) and
``_uncaught_exception`` live here alone; everything reads them from this module.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from weft.collective_settings import (
    CHECK_ENV,
    COLLECTIVE_TIMEOUT_ENV,
    DEFAULT_COLLECTIVE_TIMEOUT,
    DEFAULT_INIT_TIMEOUT,
    INIT_TIMEOUT_ENV,
    _debug_from_env,
    _flag_from_env,
    _seconds,
    collective_timeout,
)
from weft.errors import CollectiveTimeoutError, ConfigurationError, MisuseError
from weft.transport import choose_transport_interface
from weft.transport import is_loopback as _is_loopback

if TYPE_CHECKING:
    from weft.fabric import Fabric


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
