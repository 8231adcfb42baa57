"""Process lifecycle: a rank that exits ends the job, workers never outlive their launcher, signals to
the launcher stop the job with one line, and bad launcher input is refused clearly.

Real two-rank CPU jobs (gloo), started as users start them: ``python script.py`` (``fabric.launch()``),
``weft run`` and ``torchrun``, with the *default* collective timeout (600 s): each exit test would
take ten minutes without the fix. Jobs of one fixture run together (they mostly wait).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from reliability_tools import LAUNCHERS, start_lifecycle_job
from weft import registry

pytestmark = pytest.mark.skipif("ddp" not in registry.names("strategies"), reason="weft-ddp is not installed")

EXIT_JOBS = [(launcher, mode) for mode in ("exit3", "exit0") for launcher in LAUNCHERS]
#: The old teardown (a gloo "drain" barrier, then destroy) with a 20 s collective timeout: it must wait it out.
BROKEN_DRAIN = {"WEFT_TEST_BREAK": "drain", "WEFT_COLLECTIVE_TIMEOUT": "20"}


def _details(r: dict) -> str:
    return f"exit {r['returncode']} after {r['seconds']}s ({r['seconds_after_exit']}s after rank 1 exited)\n{r['output'][-4000:]}"


def _run_together(specs: list[tuple]) -> dict:
    jobs = {key: start_lifecycle_job(launcher, mode, env) for key, launcher, mode, env in specs}
    return {key: job.finish(limit_s=150) for key, job in jobs.items()}


@pytest.fixture(scope="module")
def exits():
    results = _run_together(
        [((launcher, "exit3"), launcher, "exit3", None) for launcher in LAUNCHERS]
        + [("broken drain", "python", "exit3", BROKEN_DRAIN)]
    )
    results.update(
        _run_together([((launcher, "exit0"), launcher, "exit0", None) for launcher in LAUNCHERS] + [("finish", "weft run", "finish", None)])
    )
    return results


@pytest.mark.timeout(400)
@pytest.mark.parametrize("launcher,mode", EXIT_JOBS, ids=[f"{l}-{m}" for l, m in EXIT_JOBS])
def test_an_exiting_rank_ends_the_job_quickly(exits, launcher, mode):
    r = exits[(launcher, mode)]
    assert not r["timed_out"] and r["returncode"] not in (0, None), _details(r)
    assert r["ranks_started"] == 2 and r["ranks_left_running"] == 0, _details(r)
    # The meeting at exit waits at most 10 s for ranks that are still running; then the job ends.
    assert r["seconds_after_exit"] is not None and r["seconds_after_exit"] <= 30, _details(r)
    # The whole job (start-up included, slow on a loaded machine) stays far below the 600 s a rank
    # waiting out the collective timeout would take; the bound above is the one that matters.
    assert r["seconds"] <= 150, _details(r)
    assert "trained on without rank 1" not in r["output"], _details(r)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("launcher", ["python", "weft run"])
def test_the_summary_names_the_rank_that_exited(exits, launcher):
    prefix = "weft run:" if launcher == "weft run" else "weft:"
    assert f"{prefix} rank 1 failed; the job was stopped." in exits[(launcher, "exit3")]["output"], _details(exits[(launcher, "exit3")])
    assert "rank 1 (local rank 1" in exits[(launcher, "exit3")]["output"]
    r = exits[(launcher, "exit0")]
    assert f"{prefix} rank 1 exited with code 0 while rank 0 waited for it in a collective" in r["output"], _details(r)


@pytest.mark.timeout(400)
def test_a_clean_end_still_drains_and_exits_zero(exits):
    r = exits["finish"]
    assert r["returncode"] == 0 and r["ranks_left_running"] == 0, _details(r)
    assert "terminate called" not in r["output"] and "Traceback" not in r["output"], _details(r)


@pytest.mark.timeout(400)
def test_the_old_drain_barrier_waits_out_the_collective_timeout(exits):
    """The broken variant: with the old teardown, the exiting rank stays alive until the collective
    timeout (20 s here, 600 s by default), so the check above would fail."""
    r = exits["broken drain"]
    assert r["seconds_after_exit"] is not None and r["seconds_after_exit"] >= 19, _details(r)


# ---------------------------------------------------------------------- orphans


@pytest.fixture(scope="module")
def orphans():
    specs = {
        "python": ("python", None),
        "weft run": ("weft run", None),
        "torchrun": ("torchrun", None),
        "broken watchdog": ("torchrun", {"WEFT_TEST_BREAK": "watchdog"}),
    }
    jobs = {key: start_lifecycle_job(launcher, "train", env) for key, (launcher, env) in specs.items()}
    results = {}
    try:
        for key, job in jobs.items():
            results[key] = {"ready": job.wait_for(r"WEFT-TEST-READY", 2, timeout=120)}
        for job in jobs.values():
            os.kill(job.proc.pid, signal.SIGKILL)  # the launcher only; its workers live in their own sessions
        for key, job in jobs.items():
            results[key]["gone_after_s"] = job.workers_gone_within(5 if key != "broken watchdog" else 8)
            results[key]["output"] = job.output
    finally:
        for job in jobs.values():
            job.stop()
    return results


@pytest.mark.timeout(300)
@pytest.mark.parametrize("launcher", ["python", "weft run", "torchrun"])
def test_workers_end_when_their_launcher_is_killed(orphans, launcher):
    r = orphans[launcher]
    assert r["ready"], r["output"][-3000:]
    assert r["gone_after_s"] is not None and r["gone_after_s"] <= 5, r["output"][-3000:]
    assert r["output"].count("lost its launcher (pid ") >= 1, r["output"][-3000:]


@pytest.mark.timeout(300)
def test_without_the_watchdog_workers_outlive_their_launcher(orphans):
    r = orphans["broken watchdog"]
    assert r["ready"] and r["gone_after_s"] is None, r["output"][-3000:]


# ---------------------------------------------------------------------- signals to the launcher


@pytest.fixture(scope="module")
def stopped():
    specs = {
        ("python", "SIGTERM"): None,
        ("python", "SIGINT"): None,
        ("weft run", "SIGTERM"): None,
        ("weft run", "SIGINT"): None,
        ("broken", "SIGTERM"): {"WEFT_TEST_BREAK": "signals"},
    }
    jobs = {key: start_lifecycle_job("python" if key[0] == "broken" else key[0], "train", env) for key, env in specs.items()}
    results = {}
    try:
        ready = {key: job.wait_for(r"WEFT-TEST-READY", 2, timeout=120) for key, job in jobs.items()}
        for (launcher, name), job in jobs.items():
            os.kill(job.proc.pid, getattr(signal, name))
        for key, job in jobs.items():
            results[key] = dict(job.finish(limit_s=150), ready=ready[key])
    finally:
        for job in jobs.values():
            job.stop()
    return results


@pytest.mark.timeout(300)
@pytest.mark.parametrize("launcher", ["python", "weft run"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_job_with_one_line(stopped, launcher, name):
    r = stopped[(launcher, name)]
    assert r["ready"], _details(r)
    assert r["returncode"] == 128 + getattr(signal, name), _details(r)
    prefix = "weft run:" if launcher == "weft run" else "weft:"
    assert f"{prefix} stopped by {name}; the 2 workers were stopped." in r["output"], _details(r)
    assert "Traceback" not in r["output"] and "Sending process" not in r["output"], _details(r)
    assert r["ranks_left_running"] == 0, _details(r)


@pytest.mark.timeout(300)
def test_without_the_signal_handling_the_launcher_dies_with_a_traceback(stopped):
    r = stopped[("broken", "SIGTERM")]
    assert r["returncode"] != 143 or "Traceback" in r["output"], _details(r)


# ---------------------------------------------------------------------- the launcher's summary


def _failure(rank: int, exitcode: int, timestamp: int, message: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        exitcode=exitcode, timestamp=timestamp, local_rank=rank, pid=1000 + rank, message=message,
        signal_name=lambda: signal.Signals(-exitcode).name if exitcode < 0 else "",
    )


def test_the_summary_orders_ranks_by_who_ended_first():
    from weft.launch import describe_failures

    closed = "RuntimeError: Connection closed by peer [127.0.0.1]:1234"
    # Rank 1 exited 0 early; rank 0 then failed in a collective because rank 1 was gone.
    failures = {0: _failure(0, 1, 110, closed)}
    records = {
        1: {"rank": "1", "local_rank": "1", "pid": 1001, "how": "exited with code 0", "cause": "clean", "time": 100.0},
        0: {"rank": "0", "local_rank": "0", "pid": 1000, "how": "raised RuntimeError: Connection closed by peer", "cause": "peer", "time": 105.0},
    }
    text = describe_failures(failures, records)
    assert text.startswith("rank 1 exited with code 0 while rank 0 waited for it in a collective; the job was stopped."), text
    # Broken variant: without the exit records the launcher only knows that rank 0 failed.
    assert describe_failures(failures).startswith("rank 0 failed"), describe_failures(failures)
    # A rank SIGKILLed (no record) is the root cause even when the victim's record is earlier than
    # the launcher's whole-second timestamp of the kill; ranks the launcher stopped come last.
    failures = {0: _failure(0, 1, 111, closed), 1: _failure(1, -9, 112), 2: _failure(2, -15, 112)}
    records = {0: {"rank": "0", "how": "raised RuntimeError", "cause": "peer", "time": 110.5}}
    lines = describe_failures(failures, records).splitlines()
    assert lines[0] == "rank 1 failed; the job was stopped." and "killed by signal SIGKILL" in lines[1], lines
    assert lines[-1].startswith("rank 2") and "was stopped after the failure" in lines[-1], lines


# ---------------------------------------------------------------------- bad launcher input


@pytest.mark.timeout(120)
def test_a_usage_error_exits_2_with_one_line(tmp_path):
    script = tmp_path / "noop.py"
    script.write_text("pass\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))}
    for argv, words in (
        (["--max-restarts", "-1", str(script)], "--max-restarts: '-1'"),
        (["--accelerator", "cpu", "--devices", "2", "--strategy", "single_device", str(script)], "'single_device' runs one process"),
    ):
        proc = subprocess.run([sys.executable, "-m", "weft.cli", "run", *argv], capture_output=True, text=True, timeout=60, env=env)
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert proc.returncode == 2 and len(errors) == 1 and words in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
