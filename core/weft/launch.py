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

import sys

# The public names live in weft.launching; this module re-exports them (it is part of the plugin
# API) and is what every worker runs: `python -m weft.launch SCRIPT ARGS`.
from weft.launching.elastic import RDZV_BACKEND, LaunchStoppedError, elastic_config, launch_processes, run_elastic
from weft.launching.failures import describe_failures
from weft.launching.run_command import add_run_parser, check_strategy_runs, run_command
from weft.launching.spawn import spawn_processes
from weft.launching.worker import _finish, _run_script

__all__ = [
    "launch_processes",
    "spawn_processes",
    "elastic_config",
    "run_elastic",
    "describe_failures",
    "LaunchStoppedError",
    "RDZV_BACKEND",
    "add_run_parser",
    "run_command",
    "check_strategy_runs",
]

if __name__ == "__main__":
    _finish(_run_script(sys.argv[1:]))  # only after success: a failure exits through the normal path
