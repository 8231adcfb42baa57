"""Starting the processes of a job: ``weft run`` and the launchers behind ``fabric.launch()``.

Two launchers, both usable by any strategy plugin from ``weft_strategy_launch``:

``launch_processes(fabric, function) -> Launched``
    torch.distributed's elastic launcher (the machinery of ``torchrun``) starts one
    worker per device of this node. With ``function=None`` every worker re-runs the
    whole script and this process only supervises them: it exits with their status
    and never returns to the script. With a function, that picklable callable runs in
    every worker and rank 0's result is returned.
``spawn_processes(fabric, function, start_method="spawn") -> Launched``
    ``torch.multiprocessing`` workers running ``function`` (for ``ddp_spawn`` and
    notebooks, where there is no script to re-run).

A single-node job rendezvous on loopback only. When a worker fails, the others are
stopped and the job ends non-zero, naming the failed rank and its error (read from
the elastic error file each worker writes).

``weft run`` (see :func:`add_run_parser`) starts a script the same way, passing its
flags to the script's ``Fabric(...)`` through ``WEFT_CLI_*`` variables. It also takes the
underscore spellings of Lightning's ``fabric run`` (``--num_nodes``...). A script started by
``fabric run`` itself keeps that launcher's flags: ``Fabric(...)`` reads its ``LT_*`` variables.

.. versionadded:: 0.1
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from weft.errors import ConfigurationError, LaunchError, MisuseError, MisuseTypeError

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


def describe_failures(failures: dict[int, Any], records: dict[int, dict[str, Any]] | None = None) -> str:
    """A readable account of how a job's workers ended, root cause first.

    :param failures: elastic ``ProcessFailure`` records of the workers that ended non-zero.
    :param records: weft's exit records by rank (:mod:`weft.lifecycle`), when the workers wrote them.

    Ranks are ordered by who ended first among those that failed on their own; ranks whose
    collective failed because a peer left come next, and workers the launcher itself stopped
    (SIGTERM) after the first failure last. A rank that exited with code 0 while the others
    still needed it (they then failed waiting for it) is the root cause, and is named as such.
    """
    records = records or {}

    def group(rank: int, failure: Any) -> int:
        cause = records.get(rank, {}).get("cause")
        if failure is None:
            return 0  # ended cleanly, before the others failed (filtered below)
        if cause == "peer":
            return 1
        if failure.exitcode == -signal.SIGTERM and cause is None:
            return 2  # stopped by the launcher (it sends SIGTERM)
        return 0

    def when(rank: int, failure: Any) -> float:
        record = records.get(rank)
        return float(record["time"]) if record and "time" in record else float(failure.timestamp)

    entries = [(group(r, f), when(r, f), r, f) for r, f in failures.items()]
    first_failure = min((t for _, t, _, _ in entries), default=float("inf"))
    if not any(g == 0 for g, *_ in entries):
        # Nobody failed on their own: look for a rank that left cleanly while the others waited for it.
        for rank, record in records.items():
            if rank not in failures and record.get("cause") == "clean" and float(record.get("time", 0)) <= first_failure:
                entries.append((0, float(record["time"]), rank, None))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    lines = []
    for _, _, rank, failure in entries:
        record = records.get(rank, {})
        if failure is None:
            lines.append(f"rank {rank} (local rank {record.get('local_rank')}, pid {record.get('pid')}) {record.get('how', 'exited with code 0')}")
            continue
        if group(rank, failure) == 2:
            what = "was stopped after the failure"
        elif failure.exitcode < 0:
            what = f"was killed by signal {failure.signal_name()}"
        else:
            what = f"exited with code {failure.exitcode}"
        lines.append(f"rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) {what}")
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", "")
        if not message and record.get("how", "").startswith("raised"):
            message = record["how"]
        if message and "pytorch.org/docs/stable/elastic/errors" not in str(message) and not str(message).startswith("Signal "):
            lines.append("  " + str(message).strip().replace("\n", "\n  "))
    root_group, _, root, root_failure = entries[0]
    if root_failure is None:
        waiting = sorted(r for g, _, r, _ in entries if g == 1)
        others = sorted(r for _, _, r, f in entries if f is not None)
        if waiting:
            tail = f"while rank{'s' if len(waiting) > 1 else ''} {', '.join(map(str, waiting))} waited for it in a collective"
        else:
            tail = f"while rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} still ran"
        headline = f"rank {root} {records[root].get('how', 'exited with code 0')} {tail}; the job was stopped."
    else:
        headline = f"rank {root} failed; the job was stopped."
    return headline + "\n" + "\n".join(lines)


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


def _call_recorded(function: Callable[[], Any]) -> Any:
    from torch.distributed.elastic.multiprocessing.errors import record

    from weft import lifecycle

    lifecycle.watch_launcher()
    with _exit_recorded():
        return record(function)()


# ---------------------------------------------------------------------- spawn launcher


def spawn_processes(fabric: Fabric, function: Callable[[], Any] | None, start_method: str = "spawn") -> Launched:
    """Run ``function`` in ``fabric.num_devices`` new processes on this node (``torch.multiprocessing``).

    :param fabric: the Fabric that called ``launch(fn)``.
    :param function: a no-argument callable (picklable for ``"spawn"``/``"forkserver"``).
    :param start_method: ``"spawn"``, ``"fork"`` (notebooks) or ``"forkserver"``.
    :returns: a :class:`weft.records.Launched` with rank 0's result.
    :raises LaunchError: when a process failed, naming its rank and error.
    """
    import torch.multiprocessing as mp

    from weft.builtins.environments import find_free_port
    from weft.records import Launched

    if function is None:
        # A TypeError, as Lightning raises for launch() without a function on a spawning strategy.
        raise MisuseTypeError(
            f"strategy {fabric.strategy_name!r} starts processes for a function: call fabric.launch(train_fn). "
            "To run the whole script in every process use strategy='ddp' (or `weft run`)."
        )
    if fabric.num_nodes > 1:
        raise ConfigurationError(f"{fabric.strategy_name!r} starts processes on one machine; use `weft run` for num_nodes > 1")
    nprocs = fabric.num_devices
    port = find_free_port()
    with tempfile.TemporaryDirectory(prefix="weft-spawn-") as folder:
        result_path = os.path.join(folder, "rank0.pkl")
        context = mp.start_processes(
            _spawned, args=(function, nprocs, port, result_path), nprocs=nprocs, join=False, start_method=start_method
        )
        try:
            while not context.join():
                pass
        except mp.ProcessRaisedException as exc:
            raise LaunchError(f"rank {exc.error_index} (pid {exc.pid}) failed; the other processes were stopped.\n{exc}") from None
        except mp.ProcessExitedException as exc:
            how = f"was killed by signal {exc.signal_name}" if exc.signal_name else f"exited with code {exc.exit_code}"
            raise LaunchError(f"rank {exc.error_index} (pid {exc.pid}) {how}; the other processes were stopped.") from None
        if not os.path.exists(result_path):
            return Launched(None)
        with open(result_path, "rb") as f:
            return Launched(pickle.load(f))


def _spawned(local_rank: int, function: Callable[[], Any], nprocs: int, port: int, result_path: str) -> None:
    from weft import lifecycle

    lifecycle.watch_launcher(rank=local_rank)
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs), LOCAL_WORLD_SIZE=str(nprocs),
        GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    result = function()
    if local_rank == 0:
        tmp = result_path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(result, f)
        os.replace(tmp, result_path)


# ---------------------------------------------------------------------- weft run


def _choices(kind: str, extra: Sequence[str] = ()) -> list[str] | None:
    try:
        from weft import registry

        return sorted(set(registry.names(kind)) | set(extra))
    except Exception:  # noqa: BLE001 - a broken plugin must not break `weft --help`
        return None


def _rdzv_conf(text: str) -> dict[str, str]:
    conf = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--rdzv-conf expects key=value pairs, got {item!r}")
        conf[key] = value
    return conf


def _count(minimum: int, what: str, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``minimum..maximum``, with an error that says which values work."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            allowed = f"an integer in {minimum}..{maximum}" if maximum is not None else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed} ({what})")
        return value

    return parse


def _seconds_arg(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _streams(text: str) -> str:
    """``--redirects`` / ``--tee``: checked as torch elastic will read them (0-3, or rank:value pairs)."""
    from torch.distributed.elastic.multiprocessing import Std

    try:
        Std.from_str(text)
    except (ValueError, KeyError, TypeError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 0 (none), 1 (stdout), 2 (stderr), 3 (both), or per local rank like 0:3,1:2"
        ) from None
    return text


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``weft run`` to the ``weft`` command's subparsers."""
    p = sub.add_parser(
        "run",
        help="run a training script on several processes / nodes",
        description=(
            "Start SCRIPT in one process per device on this node (torch.distributed elastic). The flags become "
            "defaults of the script's Fabric(...); an explicit, different argument in the script is an error."
        ),
    )
    p.add_argument("--accelerator", choices=_choices("accelerators", ["auto"]), help="accelerator name (default: the script's, else auto)")
    p.add_argument("--strategy", choices=_choices("strategies", ["auto"]), help="strategy name (default: the script's, else auto)")
    p.add_argument("--devices", help="processes per node: a number, -1 for all, 'auto' or indices like '0,2' (default: auto)")
    # The underscore spellings are those Lightning's `fabric run` also accepts.
    p.add_argument("--num-nodes", "--num_nodes", type=_count(1, "number of machines"), default=None, help="number of machines (default 1)")
    p.add_argument("--node-rank", "--node_rank", type=_count(0, "this machine's index"), default=0, help="this machine's index, 0 .. num-nodes-1")
    p.add_argument("--main-address", "--main_address", default="127.0.0.1", help="address of node 0 (default 127.0.0.1: this machine only)")
    p.add_argument("--main-port", "--main_port", type=_count(1, "a TCP port", 65535), default=None, help="port of node 0's store (default: a free port on one node, 29500 across nodes)")
    p.add_argument("--precision", choices=_choices("precisions"), help="precision name (default: the script's, else 32-true)")
    from weft.cli import StrategyOptionsAction, parse_strategy_option

    p.add_argument(
        "--strategy-option", "--strategy_option", dest="strategy_options", metavar="KEY=VALUE", type=parse_strategy_option,
        action=StrategyOptionsAction, default=None,
        help="keyword argument for the strategy the script selects by name (repeatable); VALUE is read as an "
        "int, float, True/False or None when it is one, else as a string",
    )
    elastic = p.add_argument_group("torch.distributed elastic options (as in torchrun)")
    elastic.add_argument("--max-restarts", type=_count(0, "restarts"), default=0, help="restarts of the worker group after a failure (default 0)")
    elastic.add_argument("--rdzv-backend", default=None, help="rendezvous backend: c10d, static, etcd... (default: static on the main address)")
    elastic.add_argument("--rdzv-endpoint", default=None, help="rendezvous host:port (default main-address:main-port)")
    elastic.add_argument("--rdzv-id", default=None, help="job id shared by all nodes (default 'weft')")
    elastic.add_argument("--rdzv-conf", type=_rdzv_conf, default=None, help="extra rendezvous options: key1=v1,key2=v2")
    elastic.add_argument("--monitor-interval", type=_seconds_arg, default=0.1, help="seconds between worker health checks")
    elastic.add_argument("--log-dir", default=None, help="folder for workers' logs and error files")
    elastic.add_argument("--redirects", type=_streams, default="0", help="redirect workers' streams to log files: 0, 1, 2, 3 or per rank 0:1,1:2")
    elastic.add_argument("--tee", type=_streams, default="0", help="like --redirects, but also print them")
    elastic.add_argument("--local-addr", default=None, help="this node's address as seen by the others")
    p.add_argument("-m", "--module", action="store_true", help="SCRIPT is a module name, run like python -m")
    p.add_argument("script", help="the training script (or module, with -m)")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run_command)


def _processes_per_node(accelerator: str | None, devices: str | None) -> int:
    from weft.selection import _hooks_of, _pick_accelerator

    plugin = _pick_accelerator(accelerator or "auto")
    parsed = _hooks_of(plugin).weft_accelerator_parse_devices(devices="auto" if devices is None else _devices_value(devices))
    return len(parsed)


def _devices_value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def run_command(args: argparse.Namespace) -> int:
    """What ``weft run`` does: check the flags, set the ``WEFT_CLI_*`` defaults and start the workers.

    :returns: the exit status: 0, 1 when a worker failed, 128 + N when stopped by signal N.
    :raises ConfigurationError: for flags that cannot work together, before any process starts.
    """
    from weft.cli_defaults import CLI_ENV, CLI_STRATEGY_OPTIONS

    num_nodes = 1 if args.num_nodes is None else args.num_nodes
    if num_nodes < 1:
        raise ConfigurationError(f"--num-nodes {num_nodes} must be at least 1")
    if not 0 <= args.node_rank < num_nodes:
        raise ConfigurationError(f"--node-rank {args.node_rank} must be in 0..{num_nodes - 1} for --num-nodes {num_nodes}")
    if not args.module and not os.path.isfile(args.script):
        raise ConfigurationError(f"no script at {args.script!r}")
    given = {
        "accelerator": args.accelerator, "strategy": args.strategy, "devices": args.devices,
        "num_nodes": args.num_nodes, "precision": args.precision,
    }
    saved = {CLI_ENV[key]: os.environ.get(CLI_ENV[key]) for key in given}
    saved[CLI_STRATEGY_OPTIONS] = os.environ.get(CLI_STRATEGY_OPTIONS)
    try:
        for key, value in given.items():
            if value is not None:
                os.environ[CLI_ENV[key]] = str(value)  # the workers inherit this environment
        options = getattr(args, "strategy_options", None)
        if options:
            import json

            os.environ[CLI_STRATEGY_OPTIONS] = json.dumps(options)
        nproc = _processes_per_node(args.accelerator, args.devices)
        if args.strategy is not None:
            check_strategy_runs(_probe_fabric(given), nproc * num_nodes, f"weft run --strategy {args.strategy}")
        config = elastic_config(
            nproc_per_node=nproc, num_nodes=num_nodes, node_rank=args.node_rank, main_address=args.main_address,
            main_port=args.main_port, max_restarts=args.max_restarts, rdzv_backend=args.rdzv_backend,
            rdzv_endpoint=args.rdzv_endpoint, rdzv_id=args.rdzv_id, rdzv_conf=args.rdzv_conf,
            monitor_interval=args.monitor_interval, log_dir=args.log_dir, redirects=args.redirects, tee=args.tee,
            local_addr=args.local_addr,
        )
        target = ["--module", args.script] if args.module else [os.path.abspath(args.script)]
        try:
            run_elastic(config, sys.executable, ["-m", "weft.launch", *target, *args.script_args])
        except LaunchError as exc:
            print(f"weft run: {exc}", file=sys.stderr, flush=True)
            return getattr(exc, "exit_code", _EXIT_FAILED)
        return 0
    finally:  # `weft.cli.main` may be called as a function: leave the caller's environment as it was
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _probe_fabric(given: dict[str, Any]) -> Fabric:
    """A ``Fabric`` built from ``weft run``'s flags alone, as each worker's script will build it by default."""
    from weft.fabric import Fabric

    kwargs = {key: value for key, value in given.items() if value is not None and key != "devices"}
    if given["devices"] is not None:
        kwargs["devices"] = _devices_value(given["devices"])
    return Fabric(**{**kwargs, "num_nodes": given["num_nodes"] or 1})


def check_strategy_runs(fabric: Fabric, processes: int, asked_by: str) -> None:
    """Refuse to run ``processes`` > 1 processes with a strategy made for one.

    The strategy's :class:`~weft.records.StrategyCapabilities` say whether it runs several
    processes (``multi_process``). A strategy that does not declare them is asked through its
    hooks: one that can run several processes starts them (``weft_strategy_launch``) or splits
    the data between them (``weft_strategy_distributed_sampler_kwargs``). Several copies of a
    one-process strategy would each train alone on the full data: a silent wrong result.

    :param asked_by: what asked for the processes, for the message (a flag, or variables).
    """
    from weft import strategy_choice
    from weft.capabilities import strategy_capabilities

    hook = fabric.hook
    if processes <= 1:
        return
    if hook.weft_strategy_capabilities.get_hookimpls():
        if strategy_capabilities(hook, repr(fabric.strategy_name)).multi_process:
            return
    elif hook.weft_strategy_launch.get_hookimpls() or hook.weft_strategy_distributed_sampler_kwargs.get_hookimpls():
        return
    multi = [c.name for c in strategy_choice.scan()[0] if c.capabilities is not None and c.capabilities.multi_process]
    suggestion = f"one of {', '.join(map(repr, multi))}" if multi else "a multi-process strategy (none is installed)"
    raise ConfigurationError(
        f"{asked_by}: strategy {fabric.strategy_name!r} runs one process, but {processes} processes were asked for; "
        f"each would train alone on all the data. Use {suggestion}, or one process (devices=1)."
    )


# ---------------------------------------------------------------------- worker side


def _run_script(argv: list[str]) -> dict:
    """Run a script (or ``--module NAME``) as ``__main__``, recording how it ends for the launcher.

    An uncaught error goes to the elastic error file; how the worker ended (exit code, error,
    signal) and when goes to weft's exit record (:mod:`weft.lifecycle`). The worker also stops
    by itself if its launcher dies.

    :returns: the script's global namespace.
    """
    import runpy

    from torch.distributed.elastic.multiprocessing.errors import record

    from weft import lifecycle

    lifecycle.watch_launcher()
    namespace: dict = {}

    def run() -> None:  # `record` does not pass a return value through
        if argv and argv[0] == "--module":
            sys.argv = [argv[1], *argv[2:]]
            namespace.update(runpy.run_module(argv[1], run_name="__main__", alter_sys=True))
            return
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python script.py` would
        namespace.update(runpy.run_path(argv[0], run_name="__main__"))

    with _exit_recorded():
        record(run)()
    return namespace


class _exit_recorded:
    """Note how the code inside ends (exit code, uncaught error, Ctrl-C) and write the exit record.

    Ctrl-C ends the worker quietly with status 130: its launcher reports the interruption.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        from weft import lifecycle

        if exc is None:
            lifecycle.note_exit(0)
        elif isinstance(exc, SystemExit):
            lifecycle.note_exit(lifecycle.exit_code_of(exc))
        elif isinstance(exc, KeyboardInterrupt):
            lifecycle.note_signal(signal.SIGINT)
            lifecycle.write_exit_record()
            raise SystemExit(128 + signal.SIGINT) from None
        else:
            lifecycle.note_exception(exc)
        lifecycle.write_exit_record()
        return False


def _finish(namespace: dict) -> None:
    """End a worker whose script succeeded, without the interpreter's final teardown.

    The process group is destroyed, the script's objects are released and the exit
    handlers run while the interpreter is whole; then the process exits directly, as
    multiprocessing's workers do. Letting the interpreter finalise instead races with
    gloo's worker threads, which can release Python-owned state after the interpreter
    has stopped accepting threads and abort the process ("terminate called without
    an active exception").
    """
    import atexit
    import gc

    from weft.distributed import destroy_process_group

    try:
        destroy_process_group()
    except Exception:  # noqa: BLE001 - exiting anyway; the script's own status decides
        pass
    namespace.clear()  # closes files and frees models the script left in its globals
    gc.collect()
    atexit._run_exitfuncs()  # noqa: SLF001 - the exit handlers os._exit would otherwise skip
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(0)


if __name__ == "__main__":
    _finish(_run_script(sys.argv[1:]))  # only after success: a failure exits through the normal path
