"""Built-in cluster environments: ``local`` (a plain process, or one started by weft's own
launchers) and ``torchelastic`` (``torchrun`` and ``weft run``)."""

from __future__ import annotations

import os
import socket

from weft.hookspecs import hookimpl


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


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
        return _int_env("RANK")

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
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
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
        return int(os.environ["MASTER_PORT"])
