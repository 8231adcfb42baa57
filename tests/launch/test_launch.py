"""Launching: fabric.launch() from python, `weft run` on one and two simulated nodes,
failures that must end the whole job, flags versus explicit Fabric arguments."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ddp"))
from ddp_helpers import SCRIPTS as DDP_SCRIPTS  # noqa: E402
from ddp_helpers import check_data_parallel, free_port, rank_results  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TRAIN = DDP_SCRIPTS / "train.py"
WEFT_RUN = ["-m", "weft.cli", "run"]


def _result(stdout):
    line = next(l for l in stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_launch_function_returns_rank_zero_result(python, strategy):
    result = _result(python([SCRIPTS / "launch_fn.py", strategy], timeout=120).stdout)
    assert result["rank"] == 0 and result["world_size"] == 2
    assert result["sum"] == [3.0, 10.0] and result["mean"] == [1.5, 5.0]
    assert result["max"] == [2.0, 10.0] and result["min"] == [1.0, 0.0]
    assert result["gather"] == [0, 1]
    assert result["broadcast"] == {"from": 1, "offset": 5}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_weft_run_takes_lightnings_underscore_flag_spellings(python):
    # `fabric run --num_nodes ...` spellings work with `weft run` too.
    flags = ["--num_nodes", "1", "--node_rank", "0", "--main_address", "127.0.0.1", "--main_port", str(free_port())]
    proc = python([*WEFT_RUN, *flags, "--devices", "2", SCRIPTS / "launch_fn.py", "ddp"], timeout=120)
    results = [json.loads(l[len("RESULT "):]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert sorted(r["rank"] for r in results) == [0, 1] and {r["world_size"] for r in results} == {2}
    assert results[0]["sum"] == [3.0, 10.0] and results[0]["mean"] == [1.5, 5.0]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_two_nodes_on_loopback_form_a_world_of_four(tmp_path):
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("WEFT_CLI_", "MASTER_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    procs = [
        subprocess.Popen(
            [sys.executable, *WEFT_RUN, "--num-nodes", "2", "--node-rank", str(node), "--main-address", "127.0.0.1",
             "--main-port", str(port), "--devices", "2", str(TRAIN), str(tmp_path), "--defaults", "--epochs", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for node in (0, 1)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=150)[0])
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    results = rank_results(tmp_path, 4)
    check_data_parallel(results)
    assert [(r["node_rank"], r["local_rank"]) for r in results] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {r["num_nodes"] for r in results} == {2}


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "launcher, mode, expected",
    [
        ("python", "raise", "ValueError: injected failure on rank 1"),
        ("weft run", "kill", "killed by signal SIGKILL"),
    ],
)
def test_a_failing_rank_ends_every_rank_and_is_named(python, tmp_path, launcher, mode, expected):
    prefix = [] if launcher == "python" else [*WEFT_RUN, "--devices", "2"]
    start = time.monotonic()
    proc = python([*prefix, TRAIN, tmp_path, "--fail-rank", "1", "--fail-mode", mode], timeout=90, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 60, f"the job took {elapsed:.0f}s to end after a rank failed"
    assert "rank 1 failed" in proc.stderr, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("rank*.json")), "a rank finished although its peer had failed"


@pytest.mark.timeout(90)
def test_cli_flag_conflicting_with_explicit_argument_is_reported(python, tmp_path):
    proc = python([*WEFT_RUN, "--devices", "1", "--strategy", "single_device", TRAIN, tmp_path], timeout=60, check=False)
    assert proc.returncode != 0
    assert "`weft run --strategy single_device` conflicts with Fabric(strategy='ddp')" in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_collective_mismatch_and_late_rank_are_reported(python):
    proc = python(["-m", "weft.cli", "run", "--devices", "2", SCRIPTS / "collective_errors.py"], timeout=90,
                  env={"WEFT_COLLECTIVE_TIMEOUT": "3"}, check=False)
    out = proc.stdout
    for rank in (0, 1):
        assert f"rank {rank}: MISMATCH" in out, out + proc.stderr
    assert "rank 0: all_reduce(shape=(3,), dtype=float32, reduce_op=mean)" in out
    assert "rank 1: all_reduce(shape=(2,), dtype=int64, reduce_op=mean)" in out
    assert "rank 0: TIMEOUT" in out and "barrier 'after sleep'" in out, out + proc.stderr
    timeout_line = next(l for l in out.splitlines() if l.startswith("rank 0: TIMEOUT"))
    assert "[1]" in timeout_line, timeout_line


def test_weft_run_offers_installed_plugins():
    from weft.cli import build_parser
    from weft import registry

    parser = build_parser()
    args = parser.parse_args(["run", "--strategy", "ddp", "--devices", "2", "train.py", "--lr", "1"])
    assert (args.strategy, args.devices, args.script, args.script_args) == ("ddp", "2", "train.py", ["--lr", "1"])
    assert "ddp" in registry.names("strategies")
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--strategy", "no-such-strategy", "train.py"])


def _listening_addresses(port):
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.append(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_single_node_stores_listen_on_loopback_only():
    import datetime

    from torch.distributed.elastic.rendezvous import RendezvousParameters

    from weft.process_group import _create_store
    from weft.launching.elastic import RDZV_BACKEND, _create_static_handler

    port = free_port()
    handler = _create_static_handler(
        RendezvousParameters(backend=RDZV_BACKEND, endpoint=f"127.0.0.1:{port}", run_id="t", min_nodes=1, max_nodes=1, rank=0)
    )
    assert _listening_addresses(port) == ["0100007F"]  # 127.0.0.1, and nothing on 0.0.0.0 / ::
    del handler
    port = free_port()
    store = _create_store("127.0.0.1", port, 0, 1, datetime.timedelta(seconds=10))
    assert _listening_addresses(port) == ["0100007F"]
    del store
