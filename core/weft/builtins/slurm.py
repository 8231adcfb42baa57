"""The ``slurm`` cluster environment: processes started by ``srun`` (one task per device).

Detected when the process is an ``srun`` task (``SLURM_PROCID`` and ``SLURM_NTASKS``
set) of a batch job. An interactive allocation (``salloc`` / ``srun --pty bash``,
whose job is named ``bash`` or ``interactive``) is not taken for a task: a script
started by hand inside it is treated as a plain local process, which then launches
its own workers.

Ranks come from ``SLURM_PROCID`` / ``SLURM_LOCALID`` / ``SLURM_NODEID``, the world size
from ``SLURM_NTASKS``. The main address is ``MASTER_ADDR`` when set, else the first
host of the job's node list (``127.0.0.1`` when the job has one node, so its store
listens on loopback only); the port is ``MASTER_PORT`` or one derived from the job id,
so every task of a job agrees without talking to the others.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import re

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl

#: Job names SLURM gives interactive allocations.
INTERACTIVE_JOB_NAMES = ("bash", "interactive")
_PORT_BASE, _PORT_SPAN = 15000, 20000


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM host list such as ``node[01-04,07],gpu-a1`` into host names.

    Handles zero-padded ranges, single numbers, several comma-separated groups and
    several bracket groups in one name (``rack[1-2]-n[1-2]``).

    :param nodelist: the value of ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST``.
    :returns: the hosts, in SLURM's order.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_one(item, nodelist))
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ConfigurationError(f"unbalanced ']' in SLURM node list {text!r}")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ConfigurationError(f"unbalanced '[' in SLURM node list {text!r}")
    items.append(current)
    return [item for item in (i.strip() for i in items) if item]


def _expand_one(item: str, whole: str) -> list[str]:
    match = re.search(r"\[([^\[\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end():]
    out = []
    for part in match.group(1).split(","):
        part = part.strip()
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ConfigurationError(f"cannot read {part!r} in SLURM node list {whole!r}")
        if not sep:
            numbers = [low]
        else:
            width = len(low)
            if int(high) < int(low):
                raise ConfigurationError(f"descending range {part!r} in SLURM node list {whole!r}")
            numbers = [str(n).zfill(width) for n in range(int(low), int(high) + 1)]
        for number in numbers:
            out.extend(_expand_one(head + number + tail, whole))
    return out


def _int(name: str) -> int | None:
    from weft.builtins.environments import int_variable

    return int_variable(name, 1 if name == "SLURM_NTASKS" else 0)


def is_batch_task(environ: dict[str, str] | None = None) -> bool:
    """Whether ``environ`` belongs to an ``srun`` task of a non-interactive job."""
    env = os.environ if environ is None else environ
    if "SLURM_NTASKS" not in env or "SLURM_PROCID" not in env:
        return False
    return env.get("SLURM_JOB_NAME", "") not in INTERACTIVE_JOB_NAMES


class SLURMEnvironment:
    """Processes started by ``srun``: ``srun -N2 --ntasks-per-node=4 python train.py``."""

    name = "slurm"

    @hookimpl
    def weft_environment_detect(self):
        return 20 if is_batch_task() else None

    @hookimpl
    def weft_environment_creates_processes_externally(self):
        return True

    @hookimpl
    def weft_environment_world_size(self):
        return _int("SLURM_NTASKS")

    @hookimpl
    def weft_environment_global_rank(self):
        rank, tasks = _int("SLURM_PROCID"), _int("SLURM_NTASKS")
        if rank is not None and tasks is not None and rank >= tasks:
            raise ConfigurationError(f"SLURM_PROCID={rank} is outside SLURM_NTASKS={tasks} (task ids are 0..{tasks - 1})")
        return rank

    @hookimpl
    def weft_environment_local_rank(self):
        return _int("SLURM_LOCALID")

    @hookimpl
    def weft_environment_node_rank(self):
        return _int("SLURM_NODEID")

    @hookimpl
    def weft_environment_main_address(self):
        if os.environ.get("MASTER_ADDR"):
            return os.environ["MASTER_ADDR"]
        nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
        hosts = expand_nodelist(nodes) if nodes else []
        if len(hosts) <= 1:
            return "127.0.0.1"  # one node: keep the store on loopback
        return hosts[0]

    @hookimpl
    def weft_environment_main_port(self):
        if os.environ.get("MASTER_PORT"):
            from weft.builtins.environments import int_variable

            return int_variable("MASTER_PORT", 1, 65535)
        job_id = os.environ.get("SLURM_JOB_ID", "")
        digits = re.sub(r"\D", "", job_id)
        if not digits:
            raise ConfigurationError("SLURM_JOB_ID is not set: set MASTER_PORT so every task uses the same port")
        return _PORT_BASE + int(digits) % _PORT_SPAN

    @hookimpl
    def weft_validate(self, fabric):
        per_node = os.environ.get("SLURM_NTASKS_PER_NODE")  # only set when --ntasks-per-node was given
        if per_node and per_node.split("(")[0].isdigit() and int(per_node.split("(")[0]) != fabric.num_devices:
            raise ConfigurationError(
                f"srun started {per_node} tasks per node but Fabric(devices={fabric.num_devices}); "
                "make --ntasks-per-node equal to devices"
            )
