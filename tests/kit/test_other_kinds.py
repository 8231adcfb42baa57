"""The precision, accelerator and cluster-environment kits: first-party plugins pass, broken ones fail.

Most checks run in this process, calling the kits' check functions directly (a broken plugin is
registered by name for the test). Two real jobs prove the rest: a ``torchrun`` job of 2
processes asked about ``local``, ``torchelastic`` and a broken environment, and one ``pytest``
run started as a plugin author starts it (``--weft-precision``, ``--weft-accelerator`` and
``--weft-environment`` with ``--weft-environment-vars`` for ``slurm``).
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from kit_helpers import SCRIPTS, clean_env, install_dist_info, run
from weft.testing import accelerator_conformance as accelerator_kit
from weft.testing import environment_conformance as environment_kit
from weft.testing import plugin_checks as checks
from weft.testing import precision_conformance as precision_kit
from weft.testing.managers import registered
from weft.testing.plugin_checks import KitFailure

sys.path.insert(0, str(SCRIPTS))
import broken_others  # noqa: E402

SLURM_VARS = [
    {"SLURM_NTASKS": "2", "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r), "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train"}
    for r in range(2)
]


def _installed(kind: str, name: str) -> bool:
    from weft import registry

    return name in registry.names(kind)


def run_precision_kit(name: str) -> None:
    """Every check of the precision kit, in the order the suite runs them."""
    checks.check_static("precision", name)
    precision_kit.check_answers(name)
    seen = precision_kit.observe_training(name)
    precision_kit.check_dtypes_applied(name, seen)
    precision_kit.check_step_is_finite(name, seen)
    precision_kit.check_state_round_trip(name, seen["fabric"])


def run_accelerator_kit(name: str) -> None:
    checks.check_static("accelerator", name)
    available = accelerator_kit.check_answers(name)
    indices = accelerator_kit.check_parse_devices(name, available)
    device = accelerator_kit.check_device(name, indices)
    accelerator_kit.check_fabric_moves_tensors(name, device)


# ---------------------------------------------------------------------- precision (in this process)


@pytest.mark.parametrize("name", ["bf16-mixed", "bf16-true", "64-true", "32-true"])
def test_first_party_precisions_pass(name: str) -> None:
    if not _installed("precisions", name):
        pytest.skip(f"precision {name!r} is not installed")
    run_precision_kit(name)


BROKEN_PRECISIONS = [
    # (name, what the failure must say)
    ("broken_misspelt", "weft_precision_dtype: no such weft hook, so weft would never call it; did you mean weft_precision_dtypes?"),
    ("broken_unapplied", "declares compute=torch.bfloat16 (weft_precision_dtypes), but inside the forward a Linear layer's output was torch.float32"),
    ("broken_state", "hook weft_precision_state_dict of precision 'broken_state'"),
    ("broken_params", "declares param=torch.bfloat16 (weft_precision_dtypes), but after fabric.setup the parameters are"),
    ("broken_output", "the forward's floating output came back as torch.bfloat16; expected torch.float32"),
    ("broken_skips", "fabric.backward and optimizer.step left every parameter unchanged"),
    ("broken_dtypes_type", "hook weft_precision_dtypes of precision 'broken_dtypes_type' (registered in code, broken_others:DictDtypesPrecision) returned {"),
]


@pytest.mark.parametrize("name,message", BROKEN_PRECISIONS, ids=[c[0] for c in BROKEN_PRECISIONS])
def test_broken_precision_fails_naming_the_hook(name: str, message: str) -> None:
    with registered("precision", name, broken_others.PRECISIONS[name]):
        with pytest.raises(KitFailure) as failure:
            run_precision_kit(name)
    assert message in str(failure.value)
    assert f"precision '{name}'" in str(failure.value)


def test_required_hook_check_names_the_misspelling() -> None:
    # The name check runs first; the required-hook check on its own must also point at the typo.
    with registered("precision", "broken_misspelt", broken_others.MisspeltPrecision):
        with pytest.raises(KitFailure, match=r"does not implement the required hook\(s\) weft_precision_dtypes \(weft_precision_dtype looks like a misspelling"):
            checks.check_required("precision", "broken_misspelt", broken_others.MisspeltPrecision())


def test_unmarked_hook_is_reported() -> None:
    class Unmarked:
        def weft_precision_dtypes(self):  # no @hookimpl: pluggy never registers it
            return None

    with registered("precision", "broken_unmarked", Unmarked):
        with pytest.raises(KitFailure, match="weft_precision_dtypes is named after a weft hook but not marked with @weft.hookimpl"):
            checks.check_hook_names("precision", "broken_unmarked", Unmarked())


def test_output_dtype_rule() -> None:
    import torch

    assert precision_kit.expected_output_dtype(torch.bfloat16) == torch.float32
    assert precision_kit.expected_output_dtype(torch.float64) == torch.float64


# ---------------------------------------------------------------------- accelerator (in this process)


def test_cpu_accelerator_passes() -> None:
    run_accelerator_kit("cpu")


BROKEN_ACCELERATORS = [
    ("broken_str_device", "hook weft_accelerator_get_device of accelerator 'broken_str_device' (registered in code, broken_others:StrDeviceAccelerator) returned 'cpu' (str) for index 0; expected a torch.device"),
    ("broken_accepts", "hook weft_accelerator_parse_devices of accelerator 'broken_accepts' (registered in code, broken_others:AcceptsAnythingAccelerator) accepted devices='banana'"),
    ("broken_available", "hook weft_accelerator_is_available of accelerator 'broken_available' (registered in code, broken_others:IntAvailableAccelerator) returned 1 (int); expected a bool"),
    ("broken_argument", "weft_accelerator_get_device(idx)"),
    ("broken_shared", "the factory returned the same object twice"),
]


@pytest.mark.parametrize("name,message", BROKEN_ACCELERATORS, ids=[c[0] for c in BROKEN_ACCELERATORS])
def test_broken_accelerator_fails_naming_the_hook(name: str, message: str) -> None:
    with registered("accelerator", name, broken_others.ACCELERATORS[name]):
        with pytest.raises(KitFailure) as failure:
            run_accelerator_kit(name)
    assert message in str(failure.value)
    assert f"accelerator '{name}'" in str(failure.value)


# ---------------------------------------------------------------------- environment checks on answers


def _answers(**per_hook: list) -> list[dict]:
    """Answers of a 2-process job: a correct torchrun-like set, with ``per_hook`` values replacing some."""
    good = {
        "weft_environment_detect": [30, 30],
        "weft_environment_creates_processes_externally": [True, True],
        "weft_environment_world_size": [2, 2],
        "weft_environment_global_rank": [0, 1],
        "weft_environment_local_rank": [0, 1],
        "weft_environment_node_rank": [None, None],
        "weft_environment_main_address": ["127.0.0.1", "127.0.0.1"],
        "weft_environment_main_port": [29500, 29500],
    }
    good.update(per_hook)
    return [{hook: {"value": values[i], "type": type(values[i]).__name__} for hook, values in good.items()} for i in range(2)]


ANSWER_CASES = [
    # (hook answers replacing the correct ones, what the failure must say)
    ({}, None),
    ({"weft_environment_detect": [None, None]}, "hook weft_environment_detect of environment 'local'"),
    ({"weft_environment_creates_processes_externally": [False, False]}, "fabric.launch() would start every process again"),
    ({"weft_environment_world_size": [2, 3]}, "answered [2, 3] in the 2 processes of the job; expected 2 in each"),
    ({"weft_environment_global_rank": ["0", "1"]}, "answered '0' (str); expected an int"),
    ({"weft_environment_local_rank": [0, 0]}, "put two processes in one place"),
    ({"weft_environment_main_address": ["127.0.0.1", "node2"]}, "they must agree"),
    ({"weft_environment_main_port": [29500, 29501]}, "expected one port in 1..65535"),
]


@pytest.mark.parametrize("answers,message", ANSWER_CASES, ids=["correct"] + [next(iter(c[0])).rsplit("_", 1)[-1] + str(i) for i, c in enumerate(ANSWER_CASES[1:])])
def test_environment_checks_on_answers(answers: dict, message: str | None) -> None:
    if message is None:
        environment_kit.check_job("local", _answers(**answers))
        return
    with pytest.raises(KitFailure) as failure:
        environment_kit.check_job("local", _answers(**answers))
    assert message in str(failure.value)


def test_environment_vars_option_is_validated() -> None:
    from weft.errors import ConfigurationError

    assert environment_kit.parse_rank_vars(json.dumps(SLURM_VARS))[1]["SLURM_PROCID"] == "1"
    for bad in ("{", '[{"A": "1"}]', '{"A": "1"}'):
        with pytest.raises(ConfigurationError, match="--weft-environment-vars"):
            environment_kit.parse_rank_vars(bad)


# ---------------------------------------------------------------------- real jobs


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """broken_others installed as the distribution weft-broken-others, for processes started by the tests."""
    groups = {
        "weft.precisions": {name: f"broken_others:{cls.__name__}" for name, cls in broken_others.PRECISIONS.items()},
        "weft.accelerators": {name: f"broken_others:{cls.__name__}" for name, cls in broken_others.ACCELERATORS.items()},
        "weft.environments": {name: f"broken_others:{cls.__name__}" for name, cls in broken_others.ENVIRONMENTS.items()},
    }
    folder = tmp_path_factory.mktemp("site")
    return install_dist_info(folder, "weft-broken-others", "0.2.0", groups, requires=["weft>=0.1,<0.2"], modules=[SCRIPTS / "broken_others.py"])


@pytest.fixture(scope="module")
def torchrun_answers(broken_site) -> dict:
    """One torchrun job of 2 processes, each answering for local, torchelastic and the broken environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")]))
        return environment_kit.collect_answers(["local", "torchelastic", "broken_same_rank"], timeout=150)


@pytest.mark.slow
@pytest.mark.timeout(200)
@pytest.mark.parametrize("name", ["local", "torchelastic"])
def test_first_party_environments_pass_under_torchrun(name: str, torchrun_answers: dict) -> None:
    environment_kit.check_job(name, torchrun_answers[name])


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_environment_with_one_rank_twice_fails(torchrun_answers: dict) -> None:
    with pytest.raises(KitFailure) as failure:
        environment_kit.check_job("broken_same_rank", torchrun_answers["broken_same_rank"])
    text = str(failure.value)
    assert "hook weft_environment_global_rank of environment 'broken_same_rank' (weft-broken-others 0.2.0, broken_others:SameRankEnvironment)" in text
    assert "answered [0, 0] in the 2 processes; expected each of 0..1 once" in text


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_kits_run_from_the_command_line(broken_site, tmp_path) -> None:
    """``pytest --weft-precision/--weft-accelerator/--weft-environment`` as an author runs it, from their own folder."""
    env = clean_env(PYTHONPATH=os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")]))
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
        "--weft-precision=broken_misspelt", "--weft-accelerator=cpu",
        "--weft-environment=slurm", f"--weft-environment-vars={json.dumps(SLURM_VARS)}",
    ]  # fmt: skip
    proc = run(command, timeout=150, env=env, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 1, out[-6000:]
    assert "weft precision kit: precision=broken_misspelt" in out and "weft environment kit: environment=slurm" in out, out[:2000]
    # The misspelt precision fails, naming the hook it meant; nothing about it passes silently.
    assert "did you mean weft_precision_dtypes?" in out, out[-6000:]
    failed = set(re.findall(r"^FAILED \S*::(test_precision_\w+)", out, re.M))
    assert failed >= {"test_precision_hook_names_are_weft_hooks", "test_precision_required_hooks_are_implemented", "test_precision_declared_dtypes_are_applied"}, out[-6000:]
    assert not re.search(r"^PASSED \S*::test_precision_(hook_names|required|declared|backward)", out, re.M), out[-6000:]
    # The first-party cpu accelerator and slurm environment (in 2 processes with its variables) pass every check.
    for kind, count in (("accelerator", 8), ("environment", 7)):
        passed = re.findall(rf"^PASSED \S*::test_{kind}_", out, re.M)
        assert len(passed) == count, f"{kind}: {len(passed)} passed, expected {count}\n{out[-6000:]}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_with_a_strategy_the_options_configure_the_strategy_kit(tmp_path) -> None:
    # Collection only: the strategy kit alone is collected, and it sees its documented defaults.
    command = [sys.executable, "-m", "pytest", "--co", "-p", "no:cacheprovider", "--weft-strategy=single_device", "--weft-precision=bf16-mixed"]
    proc = run(command, timeout=100, env=clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "precision=bf16-mixed" in proc.stdout and "accelerator=cpu" in proc.stdout, proc.stdout[:2000]
    assert "weft precision kit" not in proc.stdout and "test_precision_" not in proc.stdout, proc.stdout[-4000:]
    assert "test_accelerator_" not in proc.stdout and "<Function test_gradients_are_reduced_across_ranks>" in proc.stdout, proc.stdout[-4000:]
