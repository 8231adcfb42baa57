"""Bad launcher and environment input: ``weft run`` flags and the variables launchers set.

Cases in the form of the bad-input corpus (:mod:`bad_inputs`): each must raise a weft error of the
given built-in type, promptly, whose message names the bad flag or variable and its value. A case
that wrongly succeeds ends quickly too: the scripts it would start do nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from bad_inputs import Case

from weft import Fabric

V = ValueError

# What torchrun sets in a one-process job; cases replace or drop single variables of it.
TORCHRUN_ONE = {
    "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "GROUP_RANK": "0",
    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29512", "TORCHELASTIC_RUN_ID": "weft-bad-input",
    "TORCHELASTIC_RESTART_COUNT": "0",
}
_LAUNCHER_VARIABLES = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
    "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_USE_AGENT_STORE",
)


def _with_env(variables: dict[str, str | None], body: Callable[[], Any]) -> Any:
    """Run ``body`` with exactly these launcher variables (others unset), restoring the environment after."""
    names = set(_LAUNCHER_VARIABLES) | set(variables) | {n for n in os.environ if n.startswith(("SLURM_", "WEFT_CLI_", "LT_"))}
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in names:
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in variables.items() if v is not None})
        return body()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _fabric_under(variables: dict[str, str | None], launch: bool = False, **kwargs: Any) -> Callable[[Path], Any]:
    """A case: build ``Fabric(accelerator='cpu', **kwargs)`` (and launch it) under ``variables``."""

    def body() -> None:
        fabric = Fabric(**{"accelerator": "cpu", **kwargs})
        if launch:
            try:
                fabric.launch()
            finally:
                fabric._teardown()  # a case that wrongly succeeded must not leave a process group

    return lambda tmp: _with_env(variables, body)


def _torchrun(**changes: str | None) -> dict[str, str | None]:
    return {**TORCHRUN_ONE, **changes}


def _weft_run(*argv: str) -> Callable[[Path], Any]:
    """A case: ``weft run ARGV`` as the command line would run it, raising instead of printing."""

    def call(tmp: Path) -> Any:
        from weft import cli

        script = tmp / "noop.py"
        script.write_text("pass\n")
        args = [str(script) if a == "SCRIPT" else a for a in argv]
        parsed = cli.build_parser(raise_errors=True).parse_args(["run", *args])
        return _with_env({}, lambda: parsed.func(parsed))

    return call


def _slurm(**changes: str | None) -> dict[str, str | None]:
    base = {"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
            "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "1234", "SLURM_JOB_NODELIST": "node1"}
    return {**base, **changes}


CASES = [
    # ---- weft run flags (usage errors: exit status 2 from the command line)
    Case("weft run one-process strategy on 2 devices", _weft_run("--accelerator", "cpu", "--devices", "2", "--strategy", "single_device", "SCRIPT"), V, ("'single_device'", "2 processes", "'ddp'")),
    Case("weft run --max-restarts negative", _weft_run("--max-restarts", "-1", "SCRIPT"), V, ("--max-restarts", "'-1'", ">= 0")),
    Case("weft run --max-restarts not a number", _weft_run("--max-restarts", "many", "SCRIPT"), V, ("--max-restarts", "'many'", ">= 0")),
    Case("weft run --monitor-interval zero", _weft_run("--monitor-interval", "0", "SCRIPT"), V, ("--monitor-interval", "'0'", "positive number of seconds")),
    Case("weft run --monitor-interval negative", _weft_run("--monitor-interval", "-1", "SCRIPT"), V, ("--monitor-interval", "'-1'", "positive number")),
    Case("weft run --monitor-interval not a number", _weft_run("--monitor-interval", "fast", "SCRIPT"), V, ("--monitor-interval", "'fast'", "positive number")),
    Case("weft run --monitor-interval nan", _weft_run("--monitor-interval", "nan", "SCRIPT"), V, ("--monitor-interval", "'nan'", "positive number")),
    Case("weft run --redirects out of range", _weft_run("--redirects", "7", "SCRIPT"), V, ("--redirects", "'7'", "3 (both)")),
    Case("weft run --redirects garbage", _weft_run("--redirects", "stdout", "SCRIPT"), V, ("--redirects", "'stdout'", "0:3,1:2")),
    Case("weft run --tee bad per-rank value", _weft_run("--tee", "0:9", "SCRIPT"), V, ("--tee", "'0:9'", "0:3,1:2")),
    Case("weft run --num-nodes zero", _weft_run("--num-nodes", "0", "SCRIPT"), V, ("--num-nodes", "'0'", ">= 1")),
    Case("weft run --num-nodes not a number", _weft_run("--num-nodes", "two", "SCRIPT"), V, ("--num-nodes", "'two'", ">= 1")),
    Case("weft run --node-rank negative", _weft_run("--node-rank", "-1", "SCRIPT"), V, ("--node-rank", "'-1'", ">= 0")),
    Case("weft run --node-rank beyond --num-nodes", _weft_run("--num-nodes", "2", "--node-rank", "2", "SCRIPT"), V, ("--node-rank 2", "0..1")),
    Case("weft run --main-port above 65535", _weft_run("--main-port", "70000", "SCRIPT"), V, ("--main-port", "'70000'", "1..65535")),
    Case("weft run --main-port zero", _weft_run("--main-port", "0", "SCRIPT"), V, ("--main-port", "'0'", "1..65535")),
    Case("weft run --main-port not a number", _weft_run("--main-port", "http", "SCRIPT"), V, ("--main-port", "'http'", "1..65535")),
    Case("weft run missing script", _weft_run("/no/such/train.py"), V, ("/no/such/train.py", "no script")),
    Case("weft run without a script", _weft_run(), V, ("required", "script")),
    Case("weft run unknown strategy", _weft_run("--strategy", "horovod", "SCRIPT"), V, ("--strategy", "'horovod'", "ddp")),
    Case("weft run --devices unparsable", _weft_run("--accelerator", "cpu", "--devices", "two", "SCRIPT"), V, ("'two'", "'auto'")),
    Case("weft run --rdzv-conf without =", _weft_run("--rdzv-conf", "timeout", "SCRIPT"), V, ("--rdzv-conf", "'timeout'", "key=value")),
    Case("weft run unknown flag", _weft_run("--nproc-per-node", "2", "SCRIPT"), V, ("--nproc-per-node",)),
    # ---- partial or inconsistent launcher variables
    Case("RANK and WORLD_SIZE without LOCAL_RANK", _fabric_under({"RANK": "1", "WORLD_SIZE": "2"}), V, ("RANK=1", "WORLD_SIZE=2", "LOCAL_RANK is not")),
    Case("LOCAL_RANK without RANK", _fabric_under({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}), V, ("LOCAL_RANK=1", "RANK is not", "MASTER_PORT")),
    Case("WORLD_SIZE alone", _fabric_under({"WORLD_SIZE": "4"}), V, ("WORLD_SIZE=4", "RANK and LOCAL_RANK are not")),
    Case("RANK beyond WORLD_SIZE", _fabric_under(_torchrun(RANK="2", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", LOCAL_RANK="0")), V, ("RANK=2", "WORLD_SIZE=2", "0..1")),
    Case("two processes without MASTER_PORT", _fabric_under({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, launch=True, strategy="ddp", devices=2), V, ("WORLD_SIZE=2", "MASTER_PORT is not set")),
    Case("one-process strategy under a two-process launcher", _fabric_under({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29513"}, launch=True, strategy="single_device"), V, ("'single_device'", "2 processes")),
    # ---- garbage in launcher variables
    Case("RANK not a number", _fabric_under(_torchrun(RANK="zero")), V, ("RANK='zero'", "integer >= 0")),
    Case("RANK negative", _fabric_under(_torchrun(RANK="-1")), V, ("RANK='-1'", "integer >= 0")),
    Case("LOCAL_RANK not a number", _fabric_under(_torchrun(LOCAL_RANK="first")), V, ("LOCAL_RANK='first'", "integer >= 0")),
    Case("WORLD_SIZE zero", _fabric_under(_torchrun(WORLD_SIZE="0")), V, ("WORLD_SIZE='0'", "integer >= 1")),
    Case("WORLD_SIZE not a number", _fabric_under(_torchrun(WORLD_SIZE="two")), V, ("WORLD_SIZE='two'", "integer >= 1")),
    Case("NODE_RANK not a number", _fabric_under({"NODE_RANK": "a"}), V, ("NODE_RANK='a'", "integer >= 0")),
    Case("GROUP_RANK negative under torchrun", _fabric_under(_torchrun(GROUP_RANK="-3")), V, ("GROUP_RANK='-3'", "integer >= 0")),
    Case("MASTER_PORT above 65535", _fabric_under(_torchrun(MASTER_PORT="99999"), launch=True, strategy="ddp", devices=1), V, ("MASTER_PORT='99999'", "1..65535")),
    Case("MASTER_PORT not a number", _fabric_under(_torchrun(MASTER_PORT="port"), launch=True, strategy="ddp", devices=1), V, ("MASTER_PORT='port'", "1..65535")),
    Case("MASTER_PORT negative without torchrun", _fabric_under({"MASTER_PORT": "-5"}, launch=True, strategy="ddp", devices=1), V, ("MASTER_PORT='-5'", "1..65535")),
    # ---- SLURM variables
    Case("SLURM_NTASKS not a number", _fabric_under(_slurm(SLURM_NTASKS="many")), V, ("SLURM_NTASKS='many'", "integer >= 1")),
    Case("SLURM_PROCID negative", _fabric_under(_slurm(SLURM_PROCID="-1")), V, ("SLURM_PROCID='-1'", "integer >= 0")),
    Case("SLURM_PROCID beyond SLURM_NTASKS", _fabric_under(_slurm(SLURM_PROCID="3", SLURM_NTASKS="2", SLURM_LOCALID="1")), V, ("SLURM_PROCID=3", "SLURM_NTASKS=2")),
    Case("SLURM_LOCALID not a number", _fabric_under(_slurm(SLURM_LOCALID="x")), V, ("SLURM_LOCALID='x'", "integer >= 0")),
    # ---- weft's own variables
    Case("WEFT_INIT_TIMEOUT not a number", _fabric_under(_torchrun(WEFT_INIT_TIMEOUT="soon"), launch=True, strategy="ddp", devices=1), V, ("WEFT_INIT_TIMEOUT='soon'", "positive")),
    Case("WEFT_COLLECTIVE_TIMEOUT negative", _fabric_under(_torchrun(WEFT_COLLECTIVE_TIMEOUT="-3"), launch=True, strategy="ddp", devices=1), V, ("WEFT_COLLECTIVE_TIMEOUT='-3'", "positive")),
    Case("WEFT_COLLECTIVE_TIMEOUT infinite", _fabric_under(_torchrun(WEFT_COLLECTIVE_TIMEOUT="inf"), launch=True, strategy="ddp", devices=1), V, ("WEFT_COLLECTIVE_TIMEOUT='inf'", "finite")),
    Case("WEFT_CLI_NUM_NODES not a number", _fabric_under({"WEFT_CLI_NUM_NODES": "two"}), V, ("--num-nodes two", "integer")),
    Case("WEFT_CLI_DEVICES unparsable", _fabric_under({"WEFT_CLI_DEVICES": "lots"}), V, ("'lots'", "'auto'", "WEFT_CLI_DEVICES")),
    Case("WEFT_CLI_STRATEGY unknown", _fabric_under({"WEFT_CLI_STRATEGY": "horovod"}), V, ("'horovod'", "ddp")),
    # ---- Lightning's launcher variables
    Case("LT_DEVICES unparsable", _fabric_under({"LT_DEVICES": "lots", "LT_NUM_NODES": "1", "LT_CLI_USED": "1"}), V, ("'lots'", "'auto'", "LT_DEVICES")),
    Case("LT_NUM_NODES not a number", _fabric_under({"LT_DEVICES": "1", "LT_NUM_NODES": "x", "LT_CLI_USED": "1"}), V, ("--num-nodes x", "integer")),
    Case("LT_ACCELERATOR unknown", _fabric_under({"LT_ACCELERATOR": "tpuu", "LT_DEVICES": "1", "LT_NUM_NODES": "1", "LT_CLI_USED": "1"}, accelerator="auto"), V, ("'tpuu'",)),
    # ---- weft's own variables
    Case("WEFT_CHECK_COLLECTIVES garbage", _fabric_under(_torchrun(WEFT_CHECK_COLLECTIVES="sometimes"), launch=True, strategy="ddp", devices=1), V, ("WEFT_CHECK_COLLECTIVES='sometimes'", "0 (off)")),
    Case("WEFT_DEBUG_COLLECTIVES garbage", _fabric_under(_torchrun(WEFT_DEBUG_COLLECTIVES="maybe"), launch=True, strategy="ddp", devices=1), V, ("WEFT_DEBUG_COLLECTIVES='maybe'",)),
]

