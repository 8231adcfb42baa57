"""The weft conformance suite, collected by ``pytest --weft-strategy=NAME``.

Static checks run in the pytest process (the plugin loads, its hooks match the
specifications, the required hooks exist). Behaviour is checked in real
processes: :mod:`weft.testing.worker` is run as a script, calls
``fabric.launch()`` like a user's script does and records what each rank saw;
the tests here compare those records with values they compute themselves.
Every failure message names the hook that misbehaved and the plugin it belongs to.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
_LAUNCH_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC", "WEFT_CLI_")


# ---------------------------------------------------------------------- configuration


class Kit:
    """The options the suite runs with, and the words to name the plugin under test."""

    def __init__(self, config: pytest.Config) -> None:
        self.strategy: str = config.getoption("weft_strategy")
        self.precision: str = config.getoption("weft_precision")
        self.devices: int = config.getoption("weft_devices")
        self.accelerator: str = config.getoption("weft_accelerator")
        self.timeout: float = config.getoption("weft_timeout")
        self.rtol: float = config.getoption("weft_rtol")
        self._described: str | None = None

    @property
    def plugin(self) -> str:
        """e.g. ``strategy 'ddp' (weft-ddp 0.1.0, weft_ddp.strategy:DDPStrategy)``."""
        if self._described is None:
            from weft.testing.attribution import describe_plugin

            self._described = describe_plugin(None, "strategy", self.strategy)
        return self._described

    def hook(self, name: str) -> str:
        return f"hook {name} of {self.plugin}"


@pytest.fixture(scope="session")
def kit(request: pytest.FixtureRequest) -> Kit:
    if not request.config.getoption("weft_strategy", default=None):
        pytest.skip("the weft conformance suite runs with --weft-strategy=NAME")
    return Kit(request.config)


# ---------------------------------------------------------------------- running jobs


class Job:
    """One launched job: exit status, output and each rank's records."""

    def __init__(self, kit: Kit, phase: str, out: str, returncode: int | None, stdout: str, stderr: str) -> None:
        self.kit, self.phase, self.out = kit, phase, out
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.ranks: dict[int, dict[str, Any]] = {}
        for rank in range(kit.devices):
            path = os.path.join(out, f"{phase}-rank{rank}.json")
            if os.path.exists(path):
                with open(path) as f:
                    self.ranks[rank] = json.load(f)

    def _tail(self) -> str:
        return f"\n--- stdout (tail) ---\n{self.stdout[-3000:]}\n--- stderr (tail) ---\n{self.stderr[-6000:]}"

    def require(self, section: str) -> list[dict[str, Any]]:
        """The records of ``section`` from every rank, or a failure saying what went wrong where."""
        failures = []
        for rank, data in sorted(self.ranks.items()):
            failure = data.get("failure")
            if failure is not None and (failure["section"] == section or section not in data["sections"] or not data["sections"][section]["ok"]):
                failures.append(_describe_failure(self.kit, rank, failure))
        if failures:
            pytest.fail("\n".join(failures) + self._tail(), pytrace=False)
        missing = [r for r in range(self.kit.devices) if section not in self.ranks.get(r, {}).get("sections", {})]
        if missing or any(not self.ranks[r]["sections"][section]["ok"] for r in range(self.kit.devices)):
            if self.returncode is None:
                why = f"the {self.phase} job timed out after {self.kit.timeout:.0f}s"
            elif missing and len(self.ranks) < self.kit.devices:
                why = f"only ranks {sorted(self.ranks)} of {self.kit.devices} started (exit status {self.returncode})"
            else:
                why = f"the {self.phase} job exited with status {self.returncode}"
            pytest.fail(
                f"{self.kit.plugin}: section {section!r} never completed on ranks {missing or 'all'}: {why}."
                f" Was weft_strategy_launch / weft_strategy_setup_environment able to start {self.kit.devices} processes?"
                + self._tail(),
                pytrace=False,
            )
        return [self.ranks[r]["sections"][section] for r in range(self.kit.devices)]


def _describe_failure(kit: Kit, rank: int, failure: dict[str, Any]) -> str:
    where = f"rank {rank}, section {failure['section']!r}"
    if failure.get("hook"):
        plugin = failure.get("plugin") or kit.plugin
        head = f"{where}: hook {failure['hook']} of {plugin} raised {failure['error']}"
    else:
        head = f"{where}: {failure['error']} (strategy under test: {kit.plugin})"
    return f"{head}\n{failure['traceback']}"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCH_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    # The worker must import what this process imports (e.g. a plugin found through sys.path).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


def run_job(kit: Kit, phase: str, out: str) -> Job:
    """Run the worker script like a user runs theirs: ``python worker.py`` (it calls fabric.launch())."""
    command = [
        sys.executable, WORKER, "--phase", phase, "--strategy", kit.strategy, "--precision", kit.precision,
        "--accelerator", kit.accelerator, "--devices", str(kit.devices), "--out", out,
    ]
    stdout_path, stderr_path = os.path.join(out, f"{phase}.stdout"), os.path.join(out, f"{phase}.stderr")
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        # A new session, so that on timeout every process the launcher started is killed too.
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=_clean_env(), start_new_session=True)
        try:
            returncode: int | None = proc.wait(timeout=kit.timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    with open(stdout_path) as f_out, open(stderr_path) as f_err:
        return Job(kit, phase, out, returncode, f_out.read(), f_err.read())


@pytest.fixture(scope="session")
def workdir(kit: Kit) -> Any:
    with tempfile.TemporaryDirectory(prefix="weft-kit-") as path:
        yield path


@pytest.fixture(scope="session")
def trained(kit: Kit, workdir: str) -> Job:
    return run_job(kit, "train", workdir)


@pytest.fixture(scope="session")
def reloaded(kit: Kit, workdir: str, trained: Job) -> Job:
    trained.require("checkpoint_save")
    return run_job(kit, "load", workdir)


# ---------------------------------------------------------------------- numeric helpers


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _rel_error(actual: list[float], expected: list[float]) -> float:
    if len(actual) != len(expected):
        return math.inf
    diff = _norm([a - e for a, e in zip(actual, expected)])
    return diff / max(_norm(expected), 1e-12)


def _delta(after: list[float], before: list[float]) -> list[float]:
    return [a - b for a, b in zip(after, before)]


def _close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


# ---------------------------------------------------------------------- static checks


def test_strategy_is_installed_and_compatible(kit: Kit) -> None:
    from weft import registry
    from weft.compat import incompatibility

    record = registry.find("strategies", kit.strategy)
    problem = incompatibility(record)
    assert not problem, f"{kit.plugin}: {problem}"
    plugin = registry.create("strategies", kit.strategy)
    assert any(
        n.startswith("weft_strategy_") and hasattr(getattr(type(plugin), n), "weft_impl") for n in dir(type(plugin))
    ), f"{kit.plugin}: the entry point's factory returned {plugin!r}, which implements no weft_strategy_* hook (mark methods with @weft.hookimpl)"
    assert registry.create("strategies", kit.strategy) is not plugin, f"{kit.plugin}: the factory must return a new plugin object on each call"


def test_hooks_match_the_specifications(kit: Kit) -> None:
    from weft import registry
    from weft.testing.managers import PluginContractError, plugin_manager

    plugin = registry.create("strategies", kit.strategy)
    problem = None
    try:
        plugin_manager(plugin)
    except PluginContractError as exc:
        problem = exc.reason
    if problem:
        pytest.fail(f"{kit.plugin}: {problem}", pytrace=False)


def test_required_hooks_are_implemented(kit: Kit) -> None:
    from weft import registry
    from weft.testing.managers import missing_hooks

    missing = missing_hooks(registry.create("strategies", kit.strategy), "strategy")
    assert not missing, (
        f"{kit.plugin} does not implement the required hook(s) {', '.join(missing)}: weft has no fallback for them "
        "(see weft.hookspecs)"
    )


def test_fabric_accepts_the_configuration(kit: Kit) -> None:
    from weft import Fabric

    fabric = Fabric(strategy=kit.strategy, precision=kit.precision, accelerator=kit.accelerator, devices=kit.devices)
    assert fabric.world_size == kit.devices


# ---------------------------------------------------------------------- behaviour in real processes


def test_launch_starts_every_rank(kit: Kit, trained: Job) -> None:
    records = trained.require("launch")
    ranks = sorted(r["rank"] for r in records)
    assert ranks == list(range(kit.devices)), f"{kit.hook('weft_strategy_launch')}: ranks {ranks}, expected 0..{kit.devices - 1}"
    assert all(r["world_size"] == kit.devices for r in records)


def test_all_reduce(kit: Kit, trained: Job) -> None:
    records = trained.require("all_reduce")
    n = kit.devices
    inputs = [[r + 1.0, 2.0 * (r + 1)] for r in range(n)]
    expected = {
        "sum": [sum(v[i] for v in inputs) for i in range(2)],
        "mean": [sum(v[i] for v in inputs) / n for i in range(2)],
        "max": [max(v[i] for v in inputs) for i in range(2)],
        "min": [min(v[i] for v in inputs) for i in range(2)],
    }
    for rank, record in enumerate(records):
        for op, want in expected.items():
            assert _close(record[op], want), f"{kit.hook('weft_strategy_all_reduce')} returned {record[op]} for reduce_op={op!r} on rank {rank}; expected {want}"
        assert record["in_place"], f"{kit.hook('weft_strategy_all_reduce')}: fabric.all_reduce did not return the caller's tensor holding the result on rank {rank}"
        assert _close(record["python_number"], sum(range(n))), f"{kit.hook('weft_strategy_all_reduce')}: all_reduce of a Python number gave {record['python_number']}"


def test_all_gather(kit: Kit, trained: Job) -> None:
    records = trained.require("all_gather")
    n = kit.devices
    for rank, record in enumerate(records):
        want = [[float(r), 10.0 * r] for r in range(n)]
        if n == 1 and record["tensor"] == want[0]:
            # A one-process strategy may add no world dimension (as Lightning's single-device strategy).
            want, want_a, want_b = want[0], 0.0, [0.0, 0.0]
        else:
            want_a, want_b = [float(r) for r in range(n)], [[float(r)] * 2 for r in range(n)]
        assert _close(record["tensor"], want), f"{kit.hook('weft_strategy_all_gather')} returned {record['tensor']} on rank {rank}; expected {want} (shape (world_size, *shape), ordered by rank)"
        assert _close(record["nested_a"], want_a), f"{kit.hook('weft_strategy_all_gather')}: gathering a 0-d tensor gave {record['nested_a']}"
        assert _close(record["nested_b"], want_b)


def test_broadcast(kit: Kit, trained: Job) -> None:
    records = trained.require("broadcast")
    for rank, record in enumerate(records):
        assert record["from_first"] == {"sender": 0, "payload": [1, 2, 3]}, f"{kit.hook('weft_strategy_broadcast')}: rank {rank} received {record['from_first']!r} from src=0"
        assert record["from_last"] == f"rank-{kit.devices - 1}", f"{kit.hook('weft_strategy_broadcast')}: rank {rank} received {record['from_last']!r} from src={kit.devices - 1}"
        assert record["none"] is None, f"{kit.hook('weft_strategy_broadcast')}: broadcasting None from rank 0 gave {record['none']!r} on rank {rank}"


def test_barrier(kit: Kit, trained: Job) -> None:
    assert all(r["ok"] for r in trained.require("barrier"))


def test_setup_module_optimizer_dataloader(kit: Kit, trained: Job) -> None:
    records = trained.require("setup")
    for rank, record in enumerate(records):
        assert record["model_is_module"] and record["module_is_users"], f"{kit.hook('weft_strategy_setup_module')}: set-up model on rank {rank} does not expose the user's module"
        assert record["optimizer_keeps_type"], f"{kit.hook('weft_strategy_setup_optimizer')}: the set-up optimizer on rank {rank} is no longer a torch.optim.SGD"
    seen = [r["sample_indices"] for r in records]
    everything = list(range(64))
    partitioned = sorted(i for s in seen for i in s) == everything
    replicated = all(sorted(s) == everything for s in seen)
    assert partitioned or replicated, (
        f"{kit.hook('weft_strategy_distributed_sampler_kwargs')}: ranks saw samples {seen}; expected either a "
        "partition of the data set (a distributed sampler) or the whole data set on every rank"
    )


def test_gradients_are_reduced_across_ranks(kit: Kit, trained: Job) -> None:
    records = trained.require("gradients")
    grads = [r["grads"] for r in records]
    if all(g is not None for g in grads):
        for rank, record in enumerate(records):
            error = _rel_error(record["grads"], record["mean_grad"])
            assert error <= kit.rtol, (
                f"{kit.hook('weft_strategy_backward')}: after fabric.backward() the gradients on rank {rank} differ from the "
                f"mean of all ranks' gradients by {error:.2%} (allowed {kit.rtol:.0%}). Gradients must be averaged across ranks."
            )
        for rank in range(1, len(grads)):
            assert _rel_error(grads[rank], grads[0]) <= 1e-5, f"{kit.hook('weft_strategy_backward')}: reduced gradients differ between rank 0 and rank {rank}"
    for rank, record in enumerate(records):
        error = _rel_error(_delta(record["params_after"], record["params_before"]), _delta(record["reference_after"], record["params_before"]))
        assert error <= kit.rtol, (
            f"{kit.hook('weft_strategy_optimizer_step')}: the first optimizer step changed the parameters of rank {rank} "
            f"by an update {error:.2%} away from SGD on the rank-averaged gradient (allowed {kit.rtol:.0%})"
        )


def test_no_backward_sync_accumulates_then_syncs(kit: Kit, trained: Job) -> None:
    records = trained.require("no_backward_sync")
    for rank, record in enumerate(records):
        inside = record["grads_inside"]
        if inside is not None:
            error = _rel_error(inside, record["local_grad_inside"])
            assert error <= kit.rtol, (
                f"{kit.hook('weft_strategy_no_backward_sync')}: inside no_backward_sync(enabled=True) rank {rank}'s gradients "
                f"are {error:.2%} away from its own local gradients: backward must not synchronise there"
            )
        before = _params_before_nosync(trained, rank)
        error = _rel_error(_delta(record["params_after"], before), _delta(record["reference_after"], before))
        assert error <= kit.rtol, (
            f"{kit.hook('weft_strategy_no_backward_sync')}: a step after accumulating one micro-batch inside "
            f"no_backward_sync and one outside gave an update {error:.2%} away from SGD on the rank-averaged, "
            f"accumulated gradients on rank {rank} (allowed {kit.rtol:.0%})"
        )


def _params_before_nosync(job: Job, rank: int) -> list[float]:
    return job.ranks[rank]["sections"]["gradients"]["params_after"]


def test_loss_falls(kit: Kit, trained: Job) -> None:
    records = trained.require("training")
    losses = records[0]["epoch_losses"]
    assert all(math.isfinite(x) for x in losses), f"{kit.plugin}: non-finite training loss {losses}"
    assert losses[-1] < 0.5 * losses[0], f"{kit.plugin}: the loss did not fall while training (per epoch: {[round(x, 4) for x in losses]})"
    for rank, record in enumerate(records):
        assert record["epoch_losses"] == losses, f"{kit.hook('weft_strategy_all_reduce')}: rank {rank} saw different reduced losses"
        assert math.isfinite(record["clip_norm"]) and record["clip_norm"] > 0, f"{kit.hook('weft_strategy_clip_gradients_norm')} returned {record['clip_norm']} on rank {rank}"


def test_replicated_parameters_agree(kit: Kit, trained: Job) -> None:
    records = trained.require("training")
    first = records[0]["params"]
    for rank in range(1, len(records)):
        error = _rel_error(records[rank]["params"], first)
        assert error <= 1e-5, f"{kit.plugin}: after training, the parameters of rank {rank} differ from rank 0's by {error:.2e} (relative); replicas drifted apart"


def test_checkpoint_round_trip_in_fresh_process(kit: Kit, trained: Job, reloaded: Job) -> None:
    saved = trained.require("checkpoint_save")
    assert saved[0]["exists"], f"{kit.hook('weft_strategy_save_checkpoint')}: nothing exists at the checkpoint path after fabric.save()"
    assert not saved[0]["leftovers"], f"{kit.hook('weft_strategy_save_checkpoint')} left temporary files behind: {saved[0]['leftovers']}"
    loaded = reloaded.require("checkpoint_load")
    hook = kit.hook("weft_strategy_load_checkpoint")
    for rank, (before, after) in enumerate(zip(saved, loaded)):
        assert _rel_error(after["params_before"], before["params"]) > 1e-3, "the kit's fresh model already had the saved weights; the round trip proves nothing"
        assert _rel_error(after["params"], before["params"]) <= 1e-6, f"{hook}: rank {rank}'s parameters after fabric.load() differ from the saved ones"
        assert _rel_error(after["momentum"], before["momentum"]) <= 1e-6, f"{hook}: rank {rank}'s optimizer state (momentum) was not restored"
        assert after["step"] == 11 and after["note"] == "kit", f"{hook}: plain values were not restored on rank {rank} (step={after['step']!r}, note={after['note']!r})"
        assert "extra" in after["remainder_keys"], f"{hook}: entries not asked for must be returned; got {after['remainder_keys']}"
        assert after["extra"] == [0, 1, 2], f"{hook}: the unrequested entry came back as {after['extra']!r}"
        assert after["trains_after_load"], f"{kit.plugin}: training after fabric.load() produced non-finite parameters on rank {rank}"


def test_teardown_leaves_no_process_group(kit: Kit, trained: Job) -> None:
    trained.require("checkpoint_save")
    for rank in range(kit.devices):
        path = os.path.join(trained.out, f"teardown-rank{rank}.json")
        assert os.path.exists(path), f"rank {rank} did not exit normally (no exit record); exit status {trained.returncode}"
        with open(path) as f:
            record = json.load(f)
        assert not record["process_group_after_exit"], f"{kit.hook('weft_strategy_teardown')}: rank {rank} still had a torch.distributed process group after the Fabric was torn down"
    assert trained.returncode == 0, f"{kit.plugin}: the launched job exited with status {trained.returncode}" + trained._tail()
