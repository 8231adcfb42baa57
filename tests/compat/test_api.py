"""Fabric's API semantics and Lightning's own launcher give the same results under weft as under
Lightning Fabric; each feature's deliberately broken variant makes its comparison fail.

Lightning's observations of a scenario are taken once per module and compared with every weft
run (plain, then each breakage): a Lightning run costs several seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness import SCENARIOS

pytestmark = pytest.mark.slow

FABRIC_CLI = Path(sys.executable).with_name("fabric")  # Lightning's launcher, installed with lightning
LAUNCHER_FLAGS = ["--accelerator", "cpu", "--devices", "2", "--precision", "bf16-mixed"]
RANKS = {"api_single": 1, "api_ddp": 2, "launcher_fabric_run": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fabric_run(scenario: str, framework: str, out: Path, breakage: str | None = None) -> dict[int, dict]:
    """Start ``scenario`` with Lightning's `fabric run` (2 processes), as a user of it would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(harness._DROP)}
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"})
    if breakage:
        env["COMPAT_BREAK"] = breakage
    command = [str(FABRIC_CLI), "run", *LAUNCHER_FLAGS, "--main-port", str(_free_port()), str(SCENARIOS / f"{scenario}.py"), framework, str(out)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=out)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"fabric run {scenario} under {framework} timed out\n{exc.stdout}\n{exc.stderr}") from None
    if proc.returncode != 0:
        raise AssertionError(f"fabric run {scenario} under {framework} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    found = {int(p.name.split(".rank")[1].split(".")[0]): json.loads(p.read_text()) for p in out.glob(f"{framework}.rank*.json")}
    assert sorted(found) == [0, 1], f"expected observations of ranks 0 and 1, got {sorted(found)}\n{proc.stderr[-4000:]}"
    return found


def _run(scenario: str, framework: str, out: Path, breakage: str | None = None) -> dict[int, dict]:
    out.mkdir(parents=True, exist_ok=True)
    if scenario.startswith("launcher_"):
        return _fabric_run(scenario, framework, out, breakage)
    return harness.run(scenario, framework, out, ranks=RANKS[scenario], breakage=breakage)


@pytest.fixture(scope="module")
def against_lightning(tmp_path_factory):
    """``check(scenario, breakage=None)``: run weft, compare with Lightning's (cached) observations;
    raises :class:`harness.Mismatch` listing the differences."""
    cache: dict[str, dict[int, dict]] = {}

    def check(scenario: str, breakage: str | None = None) -> dict[int, dict]:
        if scenario not in cache:
            cache[scenario] = _run(scenario, "lightning", tmp_path_factory.mktemp(f"{scenario}-lightning"))
        weft = _run(scenario, "weft", tmp_path_factory.mktemp(f"{scenario}-{breakage or 'weft'}"), breakage)
        harness.assert_same(scenario, cache[scenario], weft)
        return weft

    return check


# ---------------------------------------------------------------------- the scenarios


def test_api_on_one_process_matches(against_lightning):
    against_lightning("api_single")


def test_api_on_two_ddp_processes_matches(against_lightning):
    against_lightning("api_ddp")


@pytest.mark.skipif(not FABRIC_CLI.exists(), reason="Lightning's `fabric` launcher is not installed")
def test_script_started_by_lightnings_launcher_matches(against_lightning):
    against_lightning("launcher_fabric_run")


# ---------------------------------------------------------------------- each feature, broken

BROKEN = [
    ("api_single", "all_gather_adds_world_dim", "all_gather/tensor"),
    ("api_single", "all_reduce_returns_copy", "is_input"),
    ("api_single", "numbers_in_default_dtypes", "all_reduce/int_number/dtype"),
    ("api_single", "precision_none_rejected", "init/precision_none"),
    ("api_single", "clip_nonfinite_allowed_by_default", "clip/inf_default"),
    ("api_single", "launch_checks_relaxed", "launch/not_callable"),
    ("api_single", "backward_needs_a_model", "backward/no_model_set_up_here"),
    ("api_single", "misuse_errors_plain_runtime", "misuse/setup_twice"),
    ("api_single", "checkpoint_private_mode", "checkpoint/mode"),
    ("api_ddp", "ddp_options_dropped", "process_group/gradient"),
    ("api_ddp", "reduce_op_names_strict", "all_reduce/op_avg"),
    ("launcher_fabric_run", "lightning_launcher_flags_ignored", "autocast_dtype"),
]


@pytest.mark.parametrize("scenario, breakage, observation", BROKEN, ids=[b for _, b, _ in BROKEN])
def test_broken_variant_fails(against_lightning, scenario, breakage, observation):
    if scenario.startswith("launcher_") and not FABRIC_CLI.exists():
        pytest.skip("Lightning's `fabric` launcher is not installed")
    message = harness.expect_mismatch(against_lightning, scenario, breakage)
    assert observation in message, message


# ---------------------------------------------------------------------- weft-only details of the same features


def test_checkpoint_mode_follows_the_umask(tmp_path):
    from weft.checkpoint import atomic_torch_save

    previous = os.umask(0o077)
    try:
        atomic_torch_save({"a": 1}, tmp_path / "private.ckpt")
        os.umask(0o002)
        atomic_torch_save({"a": 1}, tmp_path / "group.ckpt")
    finally:
        os.umask(previous)
    assert oct((tmp_path / "private.ckpt").stat().st_mode & 0o777) == oct(0o600)
    assert oct((tmp_path / "group.ckpt").stat().st_mode & 0o777) == oct(0o664)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_strategy_arguments_weft_cannot_honour_are_refused():
    from weft_ddp import DDPStrategy

    from weft import Fabric
    from weft.errors import ConfigurationError
    from weft.strategies import SingleDeviceStrategy

    with pytest.raises(ConfigurationError, match=r"accelerator.*Fabric\(accelerator=\.\.\.\)"):
        DDPStrategy(accelerator=object())
    with pytest.raises(ConfigurationError, match="Fabric\\(precision=...\\)"):
        SingleDeviceStrategy(precision=object())
    with pytest.raises(ConfigurationError, match=r"device='cuda:1'.*Fabric\(accelerator='cuda', devices=\[1\]"):
        Fabric(accelerator="cpu", strategy=SingleDeviceStrategy(device="cuda:1"))
    with pytest.raises(ConfigurationError, match=r"parallel_devices.*devices=2"):
        Fabric(accelerator="cpu", devices=1, strategy=DDPStrategy(parallel_devices=["cpu", "cpu"]))
    Fabric(accelerator="cpu", devices=2, strategy=DDPStrategy(parallel_devices=["cpu", "cpu"]))  # agrees: fine
    with pytest.raises(TypeError, match="bogus"):
        DDPStrategy(bogus=1)
    with pytest.raises(ConfigurationError, match="device_ids"):
        DDPStrategy(device_ids=[0])


def test_collectives_refuse_a_sub_group():
    import torch

    from weft import Fabric

    fabric = Fabric(accelerator="cpu")
    with pytest.raises(ValueError, match="sub-group"):
        fabric.all_reduce(torch.ones(1), group=object())
    with pytest.raises(ValueError, match="sub-group"):
        fabric.all_gather(torch.ones(1), group=object())


def test_weft_strategies_is_lazy_and_names_the_distribution(python):
    code = (
        "import sys, json\nimport weft.strategies as s\nbefore = sorted(m for m in sys.modules if m.startswith('weft_'))\n"
        "from weft.strategies import DDPStrategy\n"
        "after = sorted(m for m in sys.modules if m.startswith('weft_'))\n"
        "print(json.dumps([before, after, DDPStrategy.__module__]))\n"
    )
    before, after, module = json.loads(python(["-c", code]).stdout)
    assert before == [] and module.startswith("weft_ddp") and not [m for m in after if not m.startswith("weft_ddp")]
    missing = python(["-c", "from weft.strategies import DDPStrategy"], env={"WEFT_PLUGINS": "weft-precision"}, check=False)
    assert missing.returncode != 0 and "weft-ddp" in missing.stderr, missing.stderr


def test_sharded_checkpoint_files_get_the_usual_mode(python, tmp_path):
    pytest.importorskip("weft_fsdp")
    code = (
        "import os, sys, json\nfrom torch import nn\nfrom weft import Fabric\nos.umask(0o022)\n"
        "fabric = Fabric(accelerator='cpu', devices=1, strategy='fsdp')\nfabric.launch()\n"
        "model = fabric.setup(nn.Linear(4, 4))\nfabric.save(sys.argv[1], {'model': model, 'step': 1})\n"
        "modes = {name: oct(os.stat(os.path.join(root, name)).st_mode & 0o777) for root, dirs, files in os.walk(sys.argv[1]) for name in dirs + files}\n"
        "print(json.dumps([oct(os.stat(sys.argv[1]).st_mode & 0o777), modes]))\n"
    )
    folder, files = json.loads(python(["-c", code, tmp_path / "sharded"], timeout=120).stdout.strip().splitlines()[-1])
    assert folder == oct(0o755) and files and set(files.values()) == {oct(0o644)}, (folder, files)
