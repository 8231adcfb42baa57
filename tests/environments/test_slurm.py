"""The slurm cluster environment: node lists, interactive allocations, and a real srun job."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from weft.builtins.slurm import SLURMEnvironment, expand_nodelist, is_batch_task
from weft.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT.parent / "shared" / "tools"  # /work/shared beside the checkout, ../shared in CI
TRAIN = ROOT / "tests" / "ddp" / "scripts" / "train.py"


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node07", ["node07"]),
        ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
        ("gpu-a[9-11],cpu1", ["gpu-a9", "gpu-a10", "gpu-a11", "cpu1"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("a[008-010],b[2]", ["a008", "a009", "a010", "b2"]),
    ],
)
def test_node_list_expansion(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["node[01-", "node01]", "node[a-b]", "node[5-3]"])
def test_malformed_node_lists_are_reported(bad):
    with pytest.raises(ConfigurationError):
        expand_nodelist(bad)


def _task_env(monkeypatch, **extra):
    for key in list(os.environ):
        if key.startswith("SLURM_") or key in ("MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.delenv(key)
    values = {
        "SLURM_JOB_ID": "123456", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "8", "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "node[03-04,07]",
    }
    values.update(extra)
    for key, value in values.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


def test_batch_task_ranks_address_and_port(monkeypatch):
    _task_env(monkeypatch)
    env = SLURMEnvironment()
    assert env.weft_environment_detect() == 20
    assert env.weft_environment_creates_processes_externally() is True
    assert (env.weft_environment_world_size(), env.weft_environment_global_rank()) == (8, 5)
    assert (env.weft_environment_local_rank(), env.weft_environment_node_rank()) == (1, 1)
    assert env.weft_environment_main_address() == "node03"
    port = env.weft_environment_main_port()
    assert 15000 <= port < 35000 and port == env.weft_environment_main_port()
    monkeypatch.setenv("SLURM_JOB_ID", "123457")
    assert env.weft_environment_main_port() != port  # two jobs on one node do not collide
    monkeypatch.setenv("MASTER_PORT", "29999")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.5")
    assert (env.weft_environment_main_address(), env.weft_environment_main_port()) == ("10.0.0.5", 29999)


def test_single_node_job_uses_loopback(monkeypatch):
    _task_env(monkeypatch, SLURM_JOB_NODELIST="node07", SLURM_NTASKS="2", SLURM_PROCID="0", SLURM_NODEID="0")
    assert SLURMEnvironment().weft_environment_main_address() == "127.0.0.1"


@pytest.mark.parametrize("name", ["bash", "interactive"])
def test_interactive_allocation_is_not_a_batch_task(monkeypatch, name):
    _task_env(monkeypatch, SLURM_JOB_NAME=name)
    assert not is_batch_task()
    assert SLURMEnvironment().weft_environment_detect() is None


def test_salloc_shell_without_srun_task_is_not_detected(monkeypatch):
    _task_env(monkeypatch, SLURM_PROCID=None, SLURM_LOCALID=None, SLURM_NODEID=None)
    assert SLURMEnvironment().weft_environment_detect() is None


def test_fabric_picks_slurm_and_checks_tasks_per_node(monkeypatch):
    from weft import Fabric

    _task_env(monkeypatch, SLURM_NTASKS="2", SLURM_PROCID="1", SLURM_LOCALID="1", SLURM_NODEID="0",
              SLURM_JOB_NODELIST="node07", SLURM_NTASKS_PER_NODE="2")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    fabric = Fabric(accelerator="cpu", strategy="ddp")
    assert (fabric.environment_name, fabric.global_rank, fabric.world_size, fabric.num_devices) == ("slurm", 1, 2, 2)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(ConfigurationError, match="tasks per node"):
        Fabric(accelerator="cpu", strategy="ddp", devices=4)


def _slurm_up():
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node SLURM on loopback: reuse a running one, else start it with the shared tool."""
    if _slurm_up():
        yield
        return
    start, stop = TOOLS / "slurm-local.sh", TOOLS / "slurm-stop.sh"
    if not start.exists():
        pytest.skip(f"SLURM is not running and {start} does not exist")
    if os.geteuid() != 0:
        pytest.skip("SLURM is not running and starting it needs root (slurm-local.sh installs and runs the daemons)")
    try:
        proc = subprocess.run(["bash", str(start)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("slurm-local.sh did not bring SLURM up within 300 s")
    if proc.returncode != 0 or not _slurm_up():
        pytest.skip(f"SLURM cannot run here (slurm-local.sh exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    try:
        yield
    finally:
        subprocess.run(["bash", str(stop)], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_srun_two_tasks_train_the_seed_loop(slurm_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "WEFT_CLI_", "MASTER_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC"))}
    cmd = ["srun", "-N1", "-n2", "--ntasks-per-node=2", "-J", "weft-seed-loop", "--time=5",
           sys.executable, str(TRAIN), str(tmp_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"srun did not finish within 180 s:\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(ROOT / "tests" / "ddp"))
    from ddp_helpers import check_data_parallel, rank_results

    results = rank_results(tmp_path, 2)
    check_data_parallel(results)
    assert {r["environment"] for r in results} == {"slurm"}
    assert [(r["rank"], r["local_rank"], r["node_rank"]) for r in results] == [(0, 0, 0), (1, 1, 0)]
    assert proc.stdout.count("done after step 16") == 2
