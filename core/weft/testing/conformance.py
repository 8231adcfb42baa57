"""The weft conformance suite, collected by ``pytest --weft-strategy=NAME``.

Static checks run in the pytest process (the plugin loads, its hooks match the
specifications, the required hooks exist). Behaviour is checked in real
processes: :mod:`weft.testing.worker` is run as a script, calls
``fabric.launch()`` like a user's script does and records what each rank saw;
the tests here compare those records with values they compute themselves.
Every failure message names the hook that misbehaved and the plugin it belongs to.

The strategy's :class:`~weft.records.StrategyCapabilities` decide which checks apply:
a check that does not apply to what the strategy declares is skipped, and the skip
reason names the field (``gradient_sync='periodic': per-step gradient averaging does
not apply``). Options for the strategy's factory come from ``--weft-strategy-option
KEY=VALUE``.
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

BARRIER_DELAY = 1.5  # seconds the worker's last rank arrives late at the barrier (worker.BARRIER_DELAY)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
_LAUNCH_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC", "WEFT_CLI_")


# ---------------------------------------------------------------------- configuration


class Kit:
    """The options the suite runs with, and the words to name the plugin under test."""

    def __init__(self, config: pytest.Config) -> None:
        self.strategy: str = config.getoption("weft_strategy")
        self.precision: str = config.getoption("weft_precision") or "32-true"
        self.devices: int = config.getoption("weft_devices")
        self.accelerator: str = config.getoption("weft_accelerator") or "cpu"
        self.timeout: float = config.getoption("weft_timeout")
        self.options: dict[str, Any] = parse_options(config.getoption("weft_strategy_option", default=None) or [])
        given_rtol = config.getoption("weft_rtol")
        self.rtol: float = default_rtol(self.precision) if given_rtol is None else given_rtol
        # float16 compute comes with a gradient scaler: gradients seen before clipping are scaled.
        self.scaled_gradients: bool = compute_dtype(self.precision) == "torch.float16"
        self._described: str | None = None

    @property
    def plugin(self) -> str:
        """e.g. ``strategy 'ddp' (weft-ddp 0.1.0, weft_ddp.strategy:DDPStrategy)``."""
        if self._described is None:
            from weft.testing.attribution import describe_plugin

            self._described = describe_plugin(None, "strategy", self.strategy)
            if self.options:
                self._described += " with options " + ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return self._described

    def hook(self, name: str) -> str:
        return f"hook {name} of {self.plugin}"

    def create(self) -> Any:
        """A new plugin object, made by the registry with the kit's strategy options."""
        from weft import registry

        return registry.create("strategies", self.strategy, self.options)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["sync_every=2", "name=x"]`` -> ``{"sync_every": 2, "name": "x"}``, read exactly as
    ``weft run --strategy-option`` reads them (:func:`weft.cli.parse_strategy_option`)."""
    import argparse

    from weft.cli import parse_strategy_option

    options: dict[str, Any] = {}
    for item in items:
        try:
            key, value = parse_strategy_option(item)
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"--weft-strategy-option: {exc}") from None
        if key in options:
            raise pytest.UsageError(f"--weft-strategy-option {key}=... is given twice; give each option once")
        options[key] = value
    return options


#: --weft-rtol when not given: float32/float64 compute leaves only rounding error; 16-bit compute more.
RTOL_FULL_PRECISION = 1e-4
RTOL_LOW_PRECISION = 0.05


def compute_dtype(precision: str) -> str | None:
    """``str`` of the dtype ``precision`` computes in (``"torch.float32"``), ``None`` if unknown."""
    try:
        from weft import registry

        return str(registry.create("precisions", precision).weft_precision_dtypes().compute)
    except Exception:  # noqa: BLE001 - the precision's own failure is reported by the jobs
        return None


def default_rtol(precision: str) -> float:
    """The tolerance against the kit's float32 references for ``precision``: 1e-4 when it
    computes in float32 or float64 (``32-true``, ``64-true``), else 0.05."""
    full = compute_dtype(precision) in ("torch.float32", "torch.float64")
    return RTOL_FULL_PRECISION if full else RTOL_LOW_PRECISION


@pytest.fixture(scope="session")
def kit(request: pytest.FixtureRequest) -> Kit:
    if not request.config.getoption("weft_strategy", default=None):
        pytest.skip("the weft conformance suite runs with --weft-strategy=NAME")
    return Kit(request.config)


@pytest.fixture(scope="session")
def capabilities(kit: Kit) -> Any:
    """What the strategy declares (``weft_strategy_capabilities``, or the documented fallback)."""
    from weft.capabilities import strategy_capabilities
    from weft.testing.managers import plugin_manager

    try:
        return strategy_capabilities(plugin_manager(kit.create()).hook, who=kit.plugin)
    except Exception as exc:  # noqa: BLE001 - reported as the plugin's failure, with the hook named
        pytest.fail(f"{kit.hook('weft_strategy_capabilities')}: {type(exc).__name__}: {exc}", pytrace=False)


def skip_unless(applies: bool, reason: str) -> None:
    """Skip the calling check with ``reason`` (which names the capability) when it does not apply."""
    if not applies:
        pytest.skip(reason)


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


def run_job(kit: Kit, phase: str, out: str, launches_processes: bool = True) -> Job:
    """Run the worker script like a user runs theirs: ``python worker.py`` (it calls fabric.launch()).

    A multi-process strategy that declares ``launches_processes=False`` cannot start its own
    processes, so the worker is started as its users start theirs: ``weft run --devices N worker.py``.
    """
    worker = [
        WORKER, "--phase", phase, "--strategy", kit.strategy, "--precision", kit.precision,
        "--accelerator", kit.accelerator, "--devices", str(kit.devices), "--out", out,
    ]
    if kit.options:
        worker += ["--strategy-options", json.dumps(kit.options)]
    if launches_processes or kit.devices == 1:
        command = [sys.executable, *worker]
    else:
        command = [sys.executable, "-m", "weft.cli", "run", "--devices", str(kit.devices), *worker, "--devices-from-launcher"]
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
def trained(kit: Kit, capabilities: Any, workdir: str) -> Job:
    return run_job(kit, "train", workdir, capabilities.launches_processes)


@pytest.fixture(scope="session")
def reloaded(kit: Kit, capabilities: Any, workdir: str, trained: Job) -> Job:
    trained.require("checkpoint_save")
    return run_job(kit, "load", workdir, capabilities.launches_processes)


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
    plugin = kit.create()
    assert any(
        n.startswith("weft_strategy_") and hasattr(getattr(type(plugin), n), "weft_impl") for n in dir(type(plugin))
    ), f"{kit.plugin}: the entry point's factory returned {plugin!r}, which implements no weft_strategy_* hook (mark methods with @weft.hookimpl)"
    assert kit.create() is not plugin, f"{kit.plugin}: the factory must return a new plugin object on each call"


def test_hooks_match_the_specifications(kit: Kit) -> None:
    from weft.testing.managers import PluginContractError, plugin_manager

    plugin = kit.create()
    problem = None
    try:
        plugin_manager(plugin)
    except PluginContractError as exc:
        problem = exc.reason
    if problem:
        pytest.fail(f"{kit.plugin}: {problem}", pytrace=False)


def test_required_hooks_are_implemented(kit: Kit) -> None:
    from weft.testing.managers import missing_hooks

    missing = missing_hooks(kit.create(), "strategy")
    assert not missing, (
        f"{kit.plugin} does not implement the required hook(s) {', '.join(missing)}: weft has no fallback for them "
        "(see weft.hookspecs)"
    )


def test_capabilities_are_consistent(kit: Kit, capabilities: Any) -> None:
    hook = kit.hook("weft_strategy_capabilities")
    if capabilities.gradient_sync == "periodic":
        every = capabilities.sync_every
        assert isinstance(every, int) and not isinstance(every, bool) and every >= 1, (
            f"{hook}: gradient_sync='periodic' needs sync_every, the number of optimizer steps between syncs (>= 1); got {every!r}"
        )
    if not capabilities.multi_process:
        assert kit.devices == 1, f"{hook} declares multi_process=False: run the kit with --weft-devices=1 (got {kit.devices})"


def test_fabric_accepts_the_configuration(kit: Kit) -> None:
    from weft import Fabric

    fabric = Fabric(strategy=kit.create(), precision=kit.precision, accelerator=kit.accelerator, devices=kit.devices)
    assert fabric.world_size == kit.devices


# ---------------------------------------------------------------------- behaviour in real processes


def test_launch_starts_every_rank(kit: Kit, capabilities: Any, trained: Job) -> None:
    records = trained.require("launch")
    ranks = sorted(r["rank"] for r in records)
    assert ranks == list(range(kit.devices)), f"{kit.hook('weft_strategy_launch')}: ranks {ranks}, expected 0..{kit.devices - 1}"
    assert all(r["world_size"] == kit.devices for r in records)
    import attrs

    declared = attrs.asdict(capabilities)
    for rank, record in enumerate(records):
        assert record["capabilities"] == declared, (
            f"{kit.hook('weft_strategy_capabilities')}: rank {rank} of the launched job declared {record['capabilities']}, "
            f"the plugin created in the kit's process {declared}: the answer must not depend on the process"
        )


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


def test_barrier_waits_for_every_rank(kit: Kit, trained: Job) -> None:
    records = trained.require("barrier")
    skip_unless(kit.devices > 1, "--weft-devices=1: a barrier has no other rank to wait for")
    last = kit.devices - 1
    for rank, record in enumerate(records[:last]):
        assert record["saw_last_rank"], (
            f"{kit.hook('weft_strategy_barrier')}: fabric.barrier() returned on rank {rank} after {record['waited']:.2f}s, "
            f"before rank {last} (which arrived {BARRIER_DELAY}s late) had reached it. A barrier must wait for every rank."
        )


def test_init_module_honours_empty_init(kit: Kit, trained: Job) -> None:
    records = trained.require("init_module")
    hook = kit.hook("weft_strategy_module_init_context")
    low_precision = any(bits in records[0]["normal_dtype"] for bits in ("16", "8"))
    same = 1e-2 if low_precision else 1e-6
    for rank, record in enumerate(records):
        normal = _rel_error(record["normal_params"], record["reference_params"])
        assert normal <= same, (
            f"{hook}: under fabric.init_module(empty_init=False) after torch.manual_seed, rank {rank}'s weights are "
            f"{normal:.2e} (relative) away from the same model built without Fabric: initialisation must be the normal one"
        )
    from weft.testing.managers import plugin_manager

    implemented = bool(plugin_manager(kit.create()).hook.weft_strategy_module_init_context.get_hookimpls())
    skip_unless(
        implemented,
        "the strategy does not implement weft_strategy_module_init_context: Fabric's fallback (fabric.device) decides "
        "what empty_init=True does",
    )
    for rank, record in enumerate(records):
        if record["empty_on_meta"]:
            continue  # on the meta device: nothing was initialised
        values = record["empty_params"]
        # Uninitialised memory may hold NaN or inf: that is "not the seeded initialisation" too.
        empty = _rel_error(values, record["reference_params"]) if all(map(math.isfinite, values)) else math.inf
        assert empty > 1e-3, (
            f"{hook}: under fabric.init_module(empty_init=True) rank {rank}'s weights are the normal seeded "
            f"initialisation ({empty:.1e} relative difference): empty_init=True must skip it (uninitialised memory, "
            "or the meta device)"
        )


def test_setup_module_optimizer_dataloader(kit: Kit, trained: Job) -> None:
    records = trained.require("setup")
    for rank, record in enumerate(records):
        assert record["model_is_module"] and record["module_is_users"], f"{kit.hook('weft_strategy_setup_module')}: set-up model on rank {rank} does not expose the user's module"
        assert record["optimizer_keeps_type"], f"{kit.hook('weft_strategy_setup_optimizer')}: the set-up optimizer on rank {rank} is no longer a torch.optim.SGD"


def _same_device(name: str, device: str) -> bool:
    import torch

    a, b = torch.device(name), torch.device(device)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def test_setup_places_module_and_batches_on_the_device(kit: Kit, trained: Job) -> None:
    records = trained.require("setup")
    for rank, record in enumerate(records):
        device = record["device"]
        wrong = [d for d in record["param_devices"] if not _same_device(d, device)]
        assert not wrong, f"{kit.hook('weft_strategy_setup_module')}: the set-up module's parameters on rank {rank} are on {wrong}; fabric.device is {device}"
        want = record["precision_param_dtype"]
        assert want is None or record["param_dtypes"] == [want], (
            f"{kit.hook('weft_strategy_setup_module')}: the set-up module's parameters on rank {rank} are {record['param_dtypes']}; "
            f"precision {kit.precision!r} stores parameters in {want}. A strategy must not change their dtype."
        )
        wrong = [d for d in record["batch_devices"] if not _same_device(d, device)]
        assert not wrong, f"{kit.plugin}: batches from fabric.setup_dataloaders on rank {rank} are on {wrong}; fabric.device is {device}"


def test_data_is_sharded_as_declared(kit: Kit, capabilities: Any, trained: Job) -> None:
    records = trained.require("setup")
    seen = [r["sample_indices"] for r in records]
    everything = list(range(64))
    hook = kit.hook("weft_strategy_distributed_sampler_kwargs")
    if capabilities.shards_data:
        assert sorted(i for s in seen for i in s) == everything, (
            f"{hook}: the strategy declares shards_data=True, so the ranks must see a partition of the data set "
            f"(each sample on exactly one rank); they saw {[sorted(s) for s in seen]}. "
            f"weft_strategy_distributed_sampler_kwargs returned {records[0]['sampler_kwargs']}."
        )
    else:
        for rank, samples in enumerate(seen):
            assert sorted(samples) == everything, (
                f"{hook}: the strategy declares shards_data=False, so every rank must see the whole data set; rank {rank} "
                f"saw {sorted(samples)}. weft_strategy_distributed_sampler_kwargs returned {records[rank]['sampler_kwargs']}."
            )


def _skip_unless_per_step(capabilities: Any) -> None:
    skip_unless(
        capabilities.gradient_sync != "periodic",
        "gradient_sync='periodic': per-step gradient averaging does not apply (the periodic sync is checked instead)",
    )


def _expected_words(capabilities: Any) -> str:
    return "the mean of all ranks' gradients" if capabilities.gradient_sync == "every_step" else "this rank's own gradients (gradient_sync='never')"


def test_gradients_are_reduced_across_ranks(kit: Kit, capabilities: Any, trained: Job) -> None:
    _skip_unless_per_step(capabilities)
    records = trained.require("gradients")
    grads = [r["grads"] for r in records]
    expected = _expected_words(capabilities)
    if all(g is not None for g in grads):
        for rank, record in enumerate(records):
            error = _rel_error(record["grads"], record["expected_grad"])
            assert error <= kit.rtol, (
                f"{kit.hook('weft_strategy_backward')}: after fabric.backward() the gradients on rank {rank} differ from "
                f"{expected} by {error:.2g} (relative; allowed {kit.rtol:.2g}, --weft-rtol)."
            )
        if capabilities.gradient_sync == "every_step":
            for rank in range(1, len(grads)):
                assert _rel_error(grads[rank], grads[0]) <= 1e-5, f"{kit.hook('weft_strategy_backward')}: reduced gradients differ between rank 0 and rank {rank}"
    for rank, record in enumerate(records):
        error = _rel_error(_delta(record["params_after"], record["params_before"]), _delta(record["reference_after"], record["params_before"]))
        assert error <= kit.rtol, (
            f"{kit.hook('weft_strategy_optimizer_step')}: the first optimizer step changed the parameters of rank {rank} "
            f"by an update {error:.2g} (relative) away from SGD on {expected} (allowed {kit.rtol:.2g}, --weft-rtol)"
        )


def test_no_backward_sync_accumulates_then_syncs(kit: Kit, capabilities: Any, trained: Job) -> None:
    _skip_unless_per_step(capabilities)
    records = trained.require("no_backward_sync")
    for rank, record in enumerate(records):
        inside = record["grads_inside"]
        # no_backward_sync=False: the strategy may sync inside the context; the accumulated step must still be right.
        if inside is not None and capabilities.no_backward_sync:
            error = _rel_error(inside, record["local_grad_inside"])
            assert error <= kit.rtol, (
                f"{kit.hook('weft_strategy_no_backward_sync')}: inside no_backward_sync(enabled=True) rank {rank}'s gradients "
                f"are {error:.2g} (relative) away from its own local gradients: the strategy declares no_backward_sync=True, "
                "so backward must not synchronise there"
            )
        before = _params_before_nosync(trained, rank)
        error = _rel_error(_delta(record["params_after"], before), _delta(record["reference_after"], before))
        assert error <= kit.rtol, (
            f"{kit.hook('weft_strategy_no_backward_sync')}: a step after accumulating one micro-batch inside "
            f"no_backward_sync and one outside gave an update {error:.2g} (relative) away from SGD on the accumulated "
            f"{_expected_words(capabilities)} on rank {rank} (allowed {kit.rtol:.2g})"
        )


def _params_before_nosync(job: Job, rank: int) -> list[float]:
    return job.ranks[rank]["sections"]["gradients"]["params_after"]


def test_periodic_sync_makes_parameters_agree(kit: Kit, capabilities: Any, trained: Job) -> None:
    skip_unless(
        capabilities.gradient_sync == "periodic",
        f"gradient_sync={capabilities.gradient_sync!r}: the periodic-sync check applies to gradient_sync='periodic' only",
    )
    records = trained.require("periodic")
    every = capabilities.sync_every
    hook = kit.hook("weft_strategy_optimizer_step")
    for rank, record in enumerate(records):
        moved = _rel_error(record["params_by_step"][-1], record["params_start"])
        assert moved > 1e-6, f"{hook}: {every} optimizer step(s) left rank {rank}'s parameters unchanged"
    # Between syncs the replicas may differ: reported, not required.
    between = [
        max(_rel_error(r["params_by_step"][k], records[0]["params_by_step"][k]) for r in records[1:])
        for k in range(every - 1)
    ] if len(records) > 1 else []
    for rank in range(1, len(records)):
        error = _rel_error(records[rank]["params_by_step"][-1], records[0]["params_by_step"][-1])
        assert error <= 1e-6, (
            f"{hook}: the strategy declares gradient_sync='periodic' with sync_every={every}, but after {every} optimizer "
            f"steps on different batches the parameters of rank {rank} differ from rank 0's by {error:.2e} (relative); "
            f"they must agree at each sync point (differences after the earlier steps: {[f'{e:.1e}' for e in between]})"
        )


def test_clip_gradients_by_value(kit: Kit, trained: Job) -> None:
    records = trained.require("clipping")
    skip_unless(records[0]["full_grads"], "the strategy's gradients are not full tensors after backward: clipping is not checkable")
    hook = kit.hook("weft_strategy_clip_gradients_value")
    for rank, record in enumerate(records):
        clip = record["clip_val"]
        largest = max(abs(g) for g in record["value_after"])
        assert largest <= clip * (1 + 1e-6), (
            f"{hook}: after fabric.clip_gradients(clip_val={clip:.3g}) the largest gradient on rank {rank} is {largest:.3g} "
            f"(before: {max(abs(g) for g in record['value_before']):.3g}): every value must be clamped to [-clip_val, clip_val]"
        )
        if kit.scaled_gradients:
            continue  # the values before clipping were scaled: only the bound is checkable
        clamped = [min(max(g, -clip), clip) for g in record["value_before"]]
        error = _rel_error(record["value_after"], clamped)
        assert error <= max(kit.rtol, 1e-6), (
            f"{hook}: after fabric.clip_gradients(clip_val={clip:.3g}) rank {rank}'s gradients are {error:.2g} (relative) "
            "away from the gradients clamped to [-clip_val, clip_val]; values inside the range must stay as they were"
        )


def test_clip_gradients_by_norm(kit: Kit, trained: Job) -> None:
    records = trained.require("clipping")
    skip_unless(records[0]["full_grads"], "the strategy's gradients are not full tensors after backward: clipping is not checkable")
    hook = kit.hook("weft_strategy_clip_gradients_norm")
    for rank, record in enumerate(records):
        max_norm, before, after = record["max_norm"], _norm(record["norm_before"]), _norm(record["norm_after"])
        returned = record["returned_norm"]
        assert math.isfinite(returned) and (kit.scaled_gradients or _close(returned, before, kit.rtol)), (
            f"{hook} returned {returned:.6g} on rank {rank}; the total norm of the gradients was {before:.6g}"
        )
        assert after <= max_norm * (1 + 1e-4), (
            f"{hook}: after fabric.clip_gradients(max_norm={max_norm:.4g}) the total gradient norm on rank {rank} is "
            f"{after:.4g} (before: {before:.4g}; returned: {returned:.4g}): the gradients must be scaled down to max_norm, not only measured"
        )
        floor = 0.99 * min(max_norm, returned)
        assert after >= floor, f"{hook}: clipping to max_norm={max_norm:.4g} left a total norm of {after:.4g} on rank {rank}: scaled too far"
        error = _rel_error(record["norm_after"], [g * after / max(before, 1e-30) for g in record["norm_before"]])
        assert error <= max(kit.rtol, 1e-5), f"{hook}: clipping by norm changed the direction of rank {rank}'s gradients ({error:.2g} relative)"


def test_loss_falls(kit: Kit, trained: Job) -> None:
    records = trained.require("training")
    losses = records[0]["epoch_losses"]
    assert all(math.isfinite(x) for x in losses), f"{kit.plugin}: non-finite training loss {losses}"
    assert losses[-1] < 0.5 * losses[0], f"{kit.plugin}: the loss did not fall while training (per epoch: {[round(x, 4) for x in losses]})"
    for rank, record in enumerate(records):
        assert record["epoch_losses"] == losses, f"{kit.hook('weft_strategy_all_reduce')}: rank {rank} saw different reduced losses"


def test_parameters_agree_across_ranks(kit: Kit, capabilities: Any, trained: Job) -> None:
    skip_unless(capabilities.gradient_sync != "never", "gradient_sync='never': each process trains its own replica; they need not agree")
    records = trained.require("training")
    first = records[0]["params"]
    what = "full (gathered) parameters" if capabilities.parameters == "sharded" else "parameters"
    when = f"after training (at a sync point: step {records[0]['steps']}, sync_every={capabilities.sync_every})" if capabilities.gradient_sync == "periodic" else "after training"
    for rank in range(1, len(records)):
        error = _rel_error(records[rank]["params"], first)
        assert error <= 1e-5, f"{kit.plugin}: {when}, the {what} of rank {rank} differ from rank 0's by {error:.2e} (relative); replicas drifted apart"


def test_checkpoint_round_trip_in_fresh_process(kit: Kit, capabilities: Any, trained: Job, reloaded: Job) -> None:
    saved = trained.require("checkpoint_save")
    assert saved[0]["exists"], f"{kit.hook('weft_strategy_save_checkpoint')}: nothing exists at the checkpoint path after fabric.save()"
    assert not saved[0]["leftovers"], f"{kit.hook('weft_strategy_save_checkpoint')} left temporary files behind: {saved[0]['leftovers']}"
    loaded = reloaded.require("checkpoint_load")
    hook = kit.hook("weft_strategy_load_checkpoint")
    for rank, (before, after) in enumerate(zip(saved, loaded)):
        assert _rel_error(after["params_before"], before["params"]) > 1e-3, "the kit's fresh model already had the saved weights; the round trip proves nothing"
        assert _rel_error(after["params"], before["params"]) <= 1e-6, f"{hook}: rank {rank}'s parameters after fabric.load() differ from the saved ones"
        restored = _rel_error(after["momentum"], before["momentum"]) <= 1e-6
        if not restored and capabilities.gradient_sync != "every_step":
            # Replicas' optimizer states differ between syncs: a one-file checkpoint holds rank 0's.
            restored = _rel_error(after["momentum"], saved[0]["momentum"]) <= 1e-6
        assert restored, f"{hook}: rank {rank}'s optimizer state (momentum) was not restored"
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
