"""The cluster-environment conformance suite, collected by ``pytest --weft-environment=NAME``.

Static checks run in the pytest process (the name loads, the factory returns a new object,
every ``weft_*`` method is a real hook with arguments its specification has, and
``weft_environment_detect`` exists). What an environment answers only means something inside
the processes it describes, so the kit starts a real job of 2 processes and asks each of them:

- by default with ``torchrun --standalone --nproc-per-node 2`` (the variables of
  torchrun / ``weft run``);
- with ``--weft-environment-vars JSON``, a list with one object of variables per process
  (``[{"SLURM_PROCID": "0", ...}, {"SLURM_PROCID": "1", ...}]``), by starting one plain
  process per object with those variables set: the variables the environment's own launcher
  (``srun``, ``mpirun``, a scheduler) would set.

It then checks, across the processes: ``detect`` answers (an int: the environment recognises
its own processes); ``creates_processes_externally`` is ``True`` (they were started from
outside, so ``fabric.launch()`` must not start more); ``world_size`` is an int equal to the
number of processes; ``global_rank`` is an int and the ranks are 0..world-1, each once;
``local_rank`` and ``node_rank`` are ints (``None`` is the documented 0) and no two processes
share a (node, local rank) place; every process names the same ``main_address`` (a non-empty
str) and ``main_port`` (an int in 1..65535). Every failure names the hook and the plugin.

The worker is this module: ``python -m weft.testing.environment_conformance --worker FOLDER NAME...``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

from weft.testing import plugin_checks as checks
from weft.testing.plugin_checks import KitFailure

KIND = "environment"
PROCESSES = 2
HOOKS = (
    "weft_environment_detect",
    "weft_environment_creates_processes_externally",
    "weft_environment_world_size",
    "weft_environment_global_rank",
    "weft_environment_local_rank",
    "weft_environment_node_rank",
    "weft_environment_main_address",
    "weft_environment_main_port",
)
#: Variables of the pytest process that must not leak into the job: the job's launcher sets its own.
_LAUNCHER_PREFIXES = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_", "NODE_RANK",
    "MASTER_", "TORCHELASTIC", "SLURM_", "WEFT_CLI_",
)


# ---------------------------------------------------------------------- the job


def _answer(plugin: Any, manager: Any, hook: str) -> dict[str, Any]:
    try:
        value = getattr(manager.hook, hook)()
    except Exception as exc:  # noqa: BLE001 - the kit reports it with the hook
        return {"error": f"{type(exc).__name__}: {exc}"}
    shown = value if isinstance(value, (bool, int, str, type(None))) else repr(value)
    return {"value": shown, "type": type(value).__name__, "implemented": checks.implements(plugin, hook)}


def worker(folder: str, names: list[str]) -> None:
    """In one process of the job: ask each named environment every hook and write the answers."""
    from weft.testing.managers import plugin_manager

    answers: dict[str, dict[str, Any]] = {}
    for name in names:
        # Described here, where the plugin is installed: the kit's own process may not see it.
        answers[name] = {"plugin": checks.describe(KIND, name)}
        try:
            plugin = checks.create(KIND, name)
            manager = plugin_manager(plugin, check=False)
        except Exception as exc:  # noqa: BLE001
            answers[name]["error"] = f"{type(exc).__name__}: {exc}"
            continue
        answers[name].update({hook: _answer(plugin, manager, hook) for hook in HOOKS})
    path = os.path.join(folder, f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(answers, f)
    os.replace(path + ".tmp", path)


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def collect_answers(names: list[str], rank_vars: list[dict[str, str]] | None = None, timeout: float = 120.0) -> dict[str, list[dict[str, Any]]]:
    """Start a job, have each process answer for every environment in ``names``.

    :param rank_vars: one dict of variables per process (plain processes), or ``None`` for
        ``torchrun --standalone --nproc-per-node 2``.
    :param timeout: seconds for the whole job; on expiry every process is killed and the
        failure names the processes that had not answered.
    :returns: ``{name: [answers of one process, ...]}``.
    """
    folder = tempfile.mkdtemp(prefix="weft-env-kit-")
    module = ["-m", "weft.testing.environment_conformance", "--worker", folder, *names]
    if rank_vars is None:
        commands = [([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={PROCESSES}", "--max-restarts=0", *module], {})]
        expected = PROCESSES
    else:
        commands = [([sys.executable, *module], {k: str(v) for k, v in variables.items()}) for variables in rank_vars]
        expected = len(rank_vars)
    started = [
        subprocess.Popen(command, env=_clean_env(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for command, extra in commands
    ]
    try:
        outputs = _wait(started, time.monotonic() + timeout, timeout)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        if len(files) != expected:
            shown = "\n".join(out[-3000:] for out in outputs)
            raise KitFailure(f"{len(files)} of the job's {expected} processes answered for {', '.join(names)}:\n{shown}")
        per_process = []
        for file in files:
            with open(os.path.join(folder, file)) as f:
                per_process.append(json.load(f))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {name: [answers[name] for answers in per_process] for name in names}


def _wait(started: list[subprocess.Popen], deadline: float, timeout: float) -> list[str]:
    outputs = []
    for index, proc in enumerate(started):
        try:
            out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in started:
                if other.poll() is None:
                    os.killpg(other.pid, signal.SIGKILL)
            waiting = [i for i, p in enumerate(started) if p.returncode is None or p.returncode < 0]
            raise KitFailure(f"the environment kit's job did not finish within {timeout:.0f}s; killed; processes {waiting} had not exited") from None
        if proc.returncode != 0:
            raise KitFailure(f"process {index} of the environment kit's job exited with {proc.returncode}:\n{out[-4000:]}")
        outputs.append(out)
    return outputs


# ---------------------------------------------------------------------- checks on the answers


def _where(name: str, answers: list[dict[str, Any]]) -> str:
    """The plugin as the job's processes described it."""
    return next((process["plugin"] for process in answers if process.get("plugin")), None) or checks.describe(KIND, name)


def _values(name: str, answers: list[dict[str, Any]], hook: str) -> list[Any]:
    where = _where(name, answers)
    values = []
    for index, process in enumerate(answers):
        if "error" in process:
            raise KitFailure(f"{where}: process {index} could not create it: {process['error']}")
        answer = process[hook]
        if "error" in answer:
            raise KitFailure(f"hook {hook} of {where} raised {answer['error']} in process {index} of {len(answers)}")
        values.append(answer)
    return values


def _ints(name: str, answers: list[dict[str, Any]], hook: str, none_means: int | None = None) -> list[int]:
    values = []
    for answer in _values(name, answers, hook):
        if answer["type"] == "NoneType" and none_means is not None:
            values.append(none_means)
        elif answer["type"] != "int":
            allowed = f"an int (or None for {none_means})" if none_means is not None else "an int"
            raise KitFailure(f"hook {hook} of {_where(name, answers)} answered {answer['value']!r} ({answer['type']}); expected {allowed}")
        else:
            values.append(answer["value"])
    return values


def check_detects(name: str, answers: list[dict[str, Any]]) -> None:
    """Each process is recognised (``detect`` gives an int priority), and says it was started from outside."""
    where = _where(name, answers)
    for answer in _values(name, answers, "weft_environment_detect"):
        if answer["type"] != "int":
            raise KitFailure(
                f"hook weft_environment_detect of {where} answered {answer['value']!r} ({answer['type']}) inside processes started "
                "with its own variables; expected an int priority (None means 'not this environment', and weft would never pick it)"
            )
    for answer in _values(name, answers, "weft_environment_creates_processes_externally"):
        if answer["value"] is not True:
            raise KitFailure(
                f"hook weft_environment_creates_processes_externally of {where} answered {answer['value']!r} ({answer['type']}) in "
                "processes a launcher started; expected True (with False, fabric.launch() would start every process again)"
            )


def check_ranks(name: str, answers: list[dict[str, Any]]) -> None:
    """World size, global, local and node ranks are ints that fit together across the processes."""
    where, count = _where(name, answers), len(answers)
    worlds = _ints(name, answers, "weft_environment_world_size")
    if any(world != count for world in worlds):
        raise KitFailure(f"hook weft_environment_world_size of {where} answered {worlds} in the {count} processes of the job; expected {count} in each")
    ranks = _ints(name, answers, "weft_environment_global_rank")
    if sorted(ranks) != list(range(count)):
        raise KitFailure(
            f"hook weft_environment_global_rank of {where} answered {ranks} in the {count} processes; expected each of 0..{count - 1} once "
            "(two processes with one rank would both act as that rank)"
        )
    locals_ = _ints(name, answers, "weft_environment_local_rank", none_means=0)
    nodes = _ints(name, answers, "weft_environment_node_rank", none_means=0)
    bad = [v for v in locals_ + nodes if v < 0 or v >= count]
    if bad:
        raise KitFailure(f"{where}: local ranks {locals_} and node ranks {nodes} must lie in 0..{count - 1}")
    places = list(zip(nodes, locals_))
    if len(set(places)) != count:
        raise KitFailure(
            f"hooks weft_environment_node_rank / weft_environment_local_rank of {where} put two processes in one place: "
            f"(node, local rank) = {places}"
        )


def check_meeting_point(name: str, answers: list[dict[str, Any]]) -> None:
    """Every process names the same main address and port, so they can meet."""
    where = _where(name, answers)
    addresses = _values(name, answers, "weft_environment_main_address")
    if any(a["type"] != "str" or not a["value"] for a in addresses):
        raise KitFailure(f"hook weft_environment_main_address of {where} answered {[a['value'] for a in addresses]}; expected a host name or address (str)")
    if len({a["value"] for a in addresses}) != 1:
        raise KitFailure(f"hook weft_environment_main_address of {where} answered {[a['value'] for a in addresses]} in the processes of one job; they must agree")
    ports = _ints(name, answers, "weft_environment_main_port")
    if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != 1:
        raise KitFailure(f"hook weft_environment_main_port of {where} answered {ports} in the processes of one job; expected one port in 1..65535")


def check_job(name: str, answers: list[dict[str, Any]]) -> None:
    """All the checks on one job's answers."""
    check_detects(name, answers)
    check_ranks(name, answers)
    check_meeting_point(name, answers)


def parse_rank_vars(text: str | None) -> list[dict[str, str]] | None:
    """``--weft-environment-vars``: a JSON list holding one object of variables per process (at least 2)."""
    if not text:
        return None
    from weft.errors import ConfigurationError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--weft-environment-vars is not JSON ({exc}): give a list of objects, one per process") from None
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, dict) for v in value):
        raise ConfigurationError(
            f"--weft-environment-vars={text!r}: give a JSON list of at least 2 objects, one per process, "
            'e.g. [{"SLURM_PROCID": "0"}, {"SLURM_PROCID": "1"}]'
        )
    return [{str(k): str(v) for k, v in variables.items()} for variables in value]


# ---------------------------------------------------------------------- the pytest suite


@pytest.fixture(scope="session")
def environment_name(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("weft_environment", default=None)
    if not name:
        pytest.skip("the weft environment suite runs with --weft-environment=NAME")
    return name


@pytest.fixture(scope="session")
def job_answers(request: pytest.FixtureRequest, environment_name: str) -> list[dict[str, Any]]:
    """One real job for the whole session (or why it could not run)."""
    text, timeout = request.config.getoption("weft_environment_vars", default=None), request.config.getoption("weft_timeout", default=180.0)

    def static_then_job() -> list[dict[str, Any]]:
        checks.check_static(KIND, environment_name)
        try:
            rank_vars = parse_rank_vars(text)
        except ValueError as exc:
            raise KitFailure(str(exc)) from None
        return collect_answers([environment_name], rank_vars, timeout)[environment_name]

    return checks.attempt(static_then_job)


def test_environment_is_installed_and_compatible(environment_name: str) -> None:
    checks.report(checks.check_loads, KIND, environment_name)


def test_environment_hook_names_are_weft_hooks(environment_name: str) -> None:
    checks.report(checks.check_hook_names, KIND, environment_name, checks.report(checks.create, KIND, environment_name))


def test_environment_hooks_match_the_specifications(environment_name: str) -> None:
    checks.report(checks.check_signatures, KIND, environment_name, checks.report(checks.create, KIND, environment_name))


def test_environment_required_hooks_are_implemented(environment_name: str) -> None:
    checks.report(checks.check_required, KIND, environment_name, checks.report(checks.create, KIND, environment_name))


def test_environment_detects_its_own_processes(environment_name: str, job_answers: list[dict[str, Any]]) -> None:
    checks.report(check_detects, environment_name, checks.unwrap(job_answers))


def test_environment_ranks_fit_together(environment_name: str, job_answers: list[dict[str, Any]]) -> None:
    checks.report(check_ranks, environment_name, checks.unwrap(job_answers))


def test_environment_processes_agree_on_the_meeting_point(environment_name: str, job_answers: list[dict[str, Any]]) -> None:
    checks.report(check_meeting_point, environment_name, checks.unwrap(job_answers))


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "--worker":
    worker(sys.argv[2], sys.argv[3:])
