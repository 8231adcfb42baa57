"""Built-in cluster environments: ``local`` (a plain process, or one started by weft's own
launchers) and ``torchelastic`` (``torchrun`` and ``weft run``)."""

from __future__ import annotations

import os
import socket

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl

#: The variables every torch launcher (torchrun, weft run, fabric.launch()) sets in each process.
LAUNCHER_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
_MAX_PORT = 65535


def int_variable(name: str, minimum: int = 0, maximum: int | None = None) -> int | None:
    """The integer in environment variable ``name`` (``None`` when unset or empty).

    :raises ConfigurationError: naming the variable and its value when it is not an integer in
        ``minimum..maximum``: a launcher's typo must not become rank 0 or a random port.
    """
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}..{maximum}" if maximum is not None else f"an integer >= {minimum}"
        raise ConfigurationError(f"environment variable {name}={text!r} is not {allowed}; fix or unset it")
    return value


def _int_env(name: str) -> int | None:
    minimum = 1 if name == "WORLD_SIZE" else 0
    return int_variable(name, minimum)


def _port_env(name: str = "MASTER_PORT") -> int | None:
    return int_variable(name, 1, _MAX_PORT)


def check_rank_variables() -> None:
    """Refuse a partial or inconsistent set of launcher variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``).

    A launcher sets all three; with only some set a process cannot tell its place, and guessing
    (rank 0 of 1, or waiting for peers that will never come) is worse than saying so. Values that
    describe exactly one process (world size 1, rank 0) are a well-defined single-process job.
    """
    values = {name: _int_env(name) for name in LAUNCHER_RANK_VARIABLES}
    world, rank = values["WORLD_SIZE"], values["RANK"]
    if world is not None and rank is not None and rank >= world:
        raise ConfigurationError(f"RANK={rank} is outside WORLD_SIZE={world} (ranks are 0..{world - 1}); fix the launcher's variables")
    given = [name for name, value in values.items() if value is not None]
    if not given or len(given) == len(values):
        return
    if all(values[name] in (None, 0) for name in ("RANK", "LOCAL_RANK")) and world in (None, 1):
        return  # one process: nothing to meet
    missing = [name for name in LAUNCHER_RANK_VARIABLES if name not in given]
    shown = ", ".join(f"{name}={os.environ[name]}" for name in given)
    raise ConfigurationError(
        f"{shown} {'is' if len(given) == 1 else 'are'} set but {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not: a launcher sets all of {', '.join(LAUNCHER_RANK_VARIABLES)} "
        "(and MASTER_ADDR, MASTER_PORT). Set the missing ones in every process, or unset them all to let "
        "fabric.launch() start the processes."
    )


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bound to loopback by default, never all interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _RanksFromVariables:
    """Ranks read from the variables every torch launcher sets: ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``."""

    @hookimpl
    def weft_environment_world_size(self):
        return _int_env("WORLD_SIZE")

    @hookimpl
    def weft_environment_global_rank(self):
        rank, world = _int_env("RANK"), _int_env("WORLD_SIZE")
        if rank is not None and world is not None and rank >= world:
            raise ConfigurationError(f"RANK={rank} is outside WORLD_SIZE={world} (ranks are 0..{world - 1}); fix the launcher's variables")
        return rank

    @hookimpl
    def weft_environment_local_rank(self):
        return _int_env("LOCAL_RANK")


class LocalEnvironment(_RanksFromVariables):
    """One machine, processes started by the user or by weft's launcher.

    A launcher started by weft passes ranks to its processes through the usual
    ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` variables.
    Without them this is rank 0 of a job weft will launch itself.
    """

    name = "local"

    def __init__(self) -> None:
        self._port: int | None = None

    @hookimpl
    def weft_environment_detect(self):
        return 0

    @hookimpl
    def weft_environment_creates_processes_externally(self):
        check_rank_variables()
        return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ

    @hookimpl
    def weft_environment_node_rank(self):
        return _int_env("NODE_RANK") or _int_env("GROUP_RANK")

    @hookimpl
    def weft_environment_main_address(self):
        # Single node: loopback only, so no other machine can join or probe the store.
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @hookimpl
    def weft_environment_main_port(self):
        port = _port_env()
        if port is not None:
            return port
        world = _int_env("WORLD_SIZE")
        if world is not None and world > 1 and self.weft_environment_creates_processes_externally():
            # A port picked here is known to this process only: the others would wait for it forever.
            raise ConfigurationError(
                f"WORLD_SIZE={world} processes must meet at MASTER_ADDR:MASTER_PORT, but MASTER_PORT is not set; "
                "set the same MASTER_PORT (and MASTER_ADDR) in every process"
            )
        if self._port is None:
            self._port = find_free_port()
        return self._port


class TorchElasticEnvironment(_RanksFromVariables):
    """Processes started by torch.distributed.elastic: ``torchrun`` or ``weft run``."""

    name = "torchelastic"

    @hookimpl
    def weft_environment_detect(self):
        keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
        return 30 if all(k in os.environ for k in keys) else None

    @hookimpl
    def weft_environment_creates_processes_externally(self):
        return True

    @hookimpl
    def weft_environment_node_rank(self):
        return _int_env("GROUP_RANK")

    @hookimpl
    def weft_environment_main_address(self):
        return os.environ["MASTER_ADDR"]

    @hookimpl
    def weft_environment_main_port(self):
        return _port_env()
