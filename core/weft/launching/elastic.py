"""torch elastic's launcher (the machinery of ``torchrun``) as weft starts workers with it.

``launch_processes(fabric, function)`` starts one worker per device of this node; ``run_elastic``
runs an entry point in every worker and turns a failure (or a signal) into one weft error;
``elastic_config`` builds the ``LaunchConfig``; weft's static TCP rendezvous keeps a one-node
job's store on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from weft.errors import LaunchError, MisuseError
from weft.launching.failures import describe_failures
from weft.launching.worker import _call_recorded

if TYPE_CHECKING:
    from weft.fabric import Fabric
    from weft.records import Launched


#: The rendezvous weft uses by default: torch's static TCP rendezvous, listening on
#: loopback only when the main address is a loopback address.
RDZV_BACKEND = "weft-static"
_EXIT_FAILED = 1


# ---------------------------------------------------------------------- rendezvous


def _register_rendezvous() -> None:
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry

    # Registering the same creator twice is allowed, so this is idempotent.
    rendezvous_handler_registry.register(RDZV_BACKEND, _create_static_handler)


def _create_static_handler(params: Any) -> Any:
    """torch's static TCP rendezvous; on a loopback main address, node 0's store listens on loopback only
    (a plain TCPStore listens on every interface)."""
    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous.static_tcp_rendezvous import StaticTCPRendezvous, create_rdzv_handler

    from weft.process_group import _is_loopback, _loopback_listener

    class WeftStaticRendezvous(StaticTCPRendezvous):
        def get_backend(self) -> str:
            return RDZV_BACKEND

    handler = create_rdzv_handler(params)
    handler.__class__ = WeftStaticRendezvous
    if handler.rank == 0 and _is_loopback(handler.master_addr):
        # Created before the handler's first next_rendezvous(), which then reuses it.
        fd = _loopback_listener(handler.master_addr, handler.master_port)
        handler._store = dist.TCPStore(
            handler.master_addr, handler.master_port, handler.world_size, True, handler.timeout, master_listen_fd=fd
        )
    return handler


# ---------------------------------------------------------------------- elastic launcher


def _script_command() -> list[str]:
    """How to re-run the program that is running now, through the error-recording runner below."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        return ["-m", "weft.launch", "--module", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    script = getattr(__main__, "__file__", None)
    if not script:
        raise MisuseError(
            "fabric.launch() without a function re-runs the script in every process, but this program has no script "
            "file (interactive session or notebook). Use fabric.launch(fn) with strategy='ddp_spawn', or start a script."
        )
    return ["-m", "weft.launch", os.path.abspath(script), *sys.argv[1:]]


def elastic_config(
    nproc_per_node: int,
    num_nodes: int = 1,
    node_rank: int = 0,
    main_address: str = "127.0.0.1",
    main_port: int | None = None,
    max_restarts: int = 0,
    rdzv_backend: str | None = None,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
    rdzv_conf: dict[str, Any] | None = None,
    monitor_interval: float = 0.1,
    log_dir: str | None = None,
    redirects: str = "0",
    tee: str = "0",
    local_addr: str | None = None,
) -> Any:
    """A ``LaunchConfig`` for torch's elastic launcher, with weft's defaults.

    :param nproc_per_node: workers on this node.
    :param num_nodes: nodes in the job.
    :param node_rank: this node's index (used by the static rendezvous).
    :param main_address: where node 0's store listens.
    :param main_port: its port (a free loopback port when ``None`` on one node).
    :param max_restarts: how many times a failed worker group is restarted.
    :param rdzv_backend: a torch rendezvous backend name (``c10d``, ``static``...); default weft's static one.
    :param rdzv_endpoint: ``host:port`` of the rendezvous (default ``main_address:main_port``).
    :param rdzv_id: the job id shared by all nodes.
    :param rdzv_conf: extra rendezvous options.
    :param monitor_interval: seconds between worker health checks.
    :param log_dir: where workers' logs and error files go (a temporary folder by default).
    :param redirects: torchrun's ``--redirects`` (``0`` none, ``1`` stdout, ``2`` stderr, ``3`` both).
    :param tee: torchrun's ``--tee``.
    :param local_addr: this node's address as seen by the others.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.launcher.api import LaunchConfig

    from weft.builtins.environments import find_free_port

    if main_port is None:
        main_port = find_free_port() if num_nodes == 1 else 29500
    backend = rdzv_backend or RDZV_BACKEND
    if backend == RDZV_BACKEND:
        _register_rendezvous()
    configs = dict(rdzv_conf or {})
    if backend in (RDZV_BACKEND, "static"):
        configs.setdefault("rank", node_rank)
    return LaunchConfig(
        min_nodes=num_nodes,
        max_nodes=num_nodes,
        nproc_per_node=nproc_per_node,
        run_id=rdzv_id or "weft",
        rdzv_endpoint=rdzv_endpoint or f"{main_address}:{main_port}",
        rdzv_backend=backend,
        rdzv_configs=configs,
        max_restarts=max_restarts,
        monitor_interval=monitor_interval,
        start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=log_dir, redirects=Std.from_str(redirects), tee=Std.from_str(tee)),
        local_addr=local_addr,
    )


class LaunchStoppedError(LaunchError):
    """The launcher received SIGINT or SIGTERM and stopped its workers."""

    def __init__(self, signum: int, workers: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum  # what a shell reports for a process ended by that signal
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; the {workers} worker{'s' if workers != 1 else ''} {'were' if workers != 1 else 'was'} stopped.")


def run_elastic(config: Any, entrypoint: Callable[..., Any] | str, args: Sequence[Any]) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` (or the command ``entrypoint args``) in every worker.

    :returns: ``{global_rank: return value}`` (``None`` values for a command).
    :raises LaunchError: when a worker failed, naming the rank that failed first and how.
    :raises LaunchStoppedError: when this process got SIGINT or SIGTERM (the workers are stopped).
    """
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    from weft import lifecycle

    # As torchrun does: N workers on one machine should not each start one thread per core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    records = tempfile.mkdtemp(prefix="weft-exits-")
    previous = os.environ.get(lifecycle.EXIT_RECORDS_ENV)
    os.environ[lifecycle.EXIT_RECORDS_ENV] = records  # the workers inherit it
    restore = _stop_on_sigterm()
    quiet = _quiet_elastic_warnings()
    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        raise LaunchError(describe_failures(exc.failures, lifecycle.read_exit_records(records))) from None
    except SignalException as exc:
        raise LaunchStoppedError(int(exc.sigval), config.nproc_per_node) from None
    except KeyboardInterrupt:  # SIGINT before the workers' supervisor installed its handler
        raise LaunchStoppedError(signal.SIGINT, config.nproc_per_node) from None
    finally:
        restore()
        quiet()
        if previous is None:
            os.environ.pop(lifecycle.EXIT_RECORDS_ENV, None)
        else:
            os.environ[lifecycle.EXIT_RECORDS_ENV] = previous
        shutil.rmtree(records, ignore_errors=True)


#: torch elastic loggers whose warnings narrate a shutdown that weft's own one-line summary reports.
_NARRATING_LOGGERS = ("torch.distributed.elastic.agent.server.api", "torch.distributed.elastic.multiprocessing.api")


def _quiet_elastic_warnings() -> Callable[[], None]:
    """Keep only errors from torch elastic's shutdown narration ("Sending process N closing signal
    SIGTERM"...); returns the function that restores the previous levels."""
    import logging

    loggers = [logging.getLogger(name) for name in _NARRATING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))

    def restore() -> None:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)

    return restore


def _stop_on_sigterm() -> Callable[[], None]:
    """Until the elastic agent installs its own handler, turn SIGTERM into the exception it raises
    (rather than dying without a word); returns the function that restores the previous handler."""
    from torch.distributed.elastic.multiprocessing import SignalException

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise SignalException(f"Process {os.getpid()} got signal: {signum}", sigval=signal.Signals(signum))

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM,)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore



def launch_processes(fabric: Fabric, function: Callable[[], Any] | None) -> Launched:
    """Start this node's workers for ``fabric`` with torch's elastic launcher.

    :param fabric: the Fabric that called ``launch()``; its ``num_devices`` workers are started.
    :param function: ``None`` to re-run the whole script in each worker (this process
        then exits with their status), or a picklable no-argument callable.
    :returns: a :class:`weft.records.Launched` with rank 0's result (function mode only).
    """
    from weft.records import Launched

    config = elastic_config(nproc_per_node=fabric.num_devices, num_nodes=fabric.num_nodes, node_rank=fabric.node_rank)
    if function is None:
        command = _script_command()
        try:
            run_elastic(config, sys.executable, command)
        except LaunchError as exc:
            print(f"weft: {exc}", file=sys.stderr, flush=True)
            sys.exit(getattr(exc, "exit_code", _EXIT_FAILED))
        sys.exit(0)  # the workers ran the script; this supervising process must not run it again
    results = run_elastic(config, _call_recorded, (function,))
    return Launched(results.get(0))
