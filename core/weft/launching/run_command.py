"""The ``weft run`` command: its flags (:func:`add_run_parser`), their checks, and the start of the workers.

``weft run`` starts a script the way ``fabric.launch()`` does, passing its flags to the script's
``Fabric(...)`` through ``WEFT_CLI_*`` variables. :func:`check_strategy_runs` refuses several
processes for a one-process strategy (also asked by ``Fabric`` under torchrun).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from weft.errors import ConfigurationError, LaunchError
from weft.launching.elastic import _EXIT_FAILED, elastic_config, run_elastic

if TYPE_CHECKING:
    from weft.fabric import Fabric


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
