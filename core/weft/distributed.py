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

# The code lives in small modules; this one is the public face (part of the plugin API) and
# re-exports their public names. Module state (the process group weft created) lives in
# weft.process_group alone: read it there, never through this module.
from weft.collective_hooks import CollectiveHooks
from weft.collective_settings import (
    CHECK_ENV,
    COLLECTIVE_TIMEOUT_ENV,
    DEBUG_ENV,
    DEFAULT_COLLECTIVE_TIMEOUT,
    DEFAULT_INIT_TIMEOUT,
    INIT_TIMEOUT_ENV,
    collective_timeout,
)
from weft.collectives import (
    all_gather,
    all_reduce,
    average_parameters,
    barrier,
    broadcast_object,
    broadcast_tensor,
    match_rank_zero_call,
)
from weft.hookspecs import hookimpl
from weft.process_group import (
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_initialized,
    set_debug,
)
from weft.transport import choose_transport_interface

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
