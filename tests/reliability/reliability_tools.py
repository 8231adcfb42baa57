"""Fault injection shared by the reliability tests and the figures report (report.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
HANG_SCENARIOS = ("skip_barrier", "skip_all_reduce", "raise", "sigkill")
#: Collective timeout used by the hang scenarios; short, so a test waits seconds, not minutes.
COLLECTIVE_TIMEOUT_S = 5


def _env(debug: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "TORCHELASTIC"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["WEFT_COLLECTIVE_TIMEOUT"] = str(COLLECTIVE_TIMEOUT_S)
    env["WEFT_DEBUG_COLLECTIVES"] = "1" if debug else "0"
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for every purpose but still answers kill(0): read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_hang_scenario(name: str, debug: bool = False) -> tuple[subprocess.Popen, float]:
    """Start the two-rank job of scenario ``name`` (with ``WEFT_DEBUG_COLLECTIVES`` when ``debug``);
    returns the launcher process and its start time."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "hang_scenarios.py"), name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(debug), start_new_session=True,
    )
    return proc, time.perf_counter()


def finish_hang_scenario(proc: subprocess.Popen, started: float, limit_s: float = 90) -> dict:
    """Wait for a scenario's job; report its exit code, seconds until every process exited, and output."""
    try:
        output, _ = proc.communicate(timeout=limit_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # only this job's own session
        output, _ = proc.communicate()
        timed_out = True
    pids = [int(p) for p in re.findall(r"WEFT-TEST-PID rank=\d+ pid=(\d+)", output)]
    # Ranks may outlive the launcher only briefly; give them a moment, then count what is left.
    deadline = time.perf_counter() + 5
    while any(_alive(p) for p in pids) and time.perf_counter() < deadline:
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    left = [p for p in pids if _alive(p)]
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "seconds": round(seconds, 1),
        "ranks_started": len(pids),
        "ranks_left_running": len(left),
        # Named as the culprit (not merely listed): by the rank that waited for it, or by the launcher.
        "names_rank_1": bool(re.search(r"Ranks? 1 failed|rank\(s\) \[1\] never|weft: rank 1 failed", output)),
        "output": output,
    }


def run_hang_scenarios(names=HANG_SCENARIOS, at_once: int = 2) -> dict[str, dict]:
    """Run scenarios ``at_once`` at a time (they are mostly waiting on timeouts)."""
    results = {}
    names = list(names)
    for i in range(0, len(names), at_once):
        running = [(n, *start_hang_scenario(n)) for n in names[i : i + at_once]]
        for name, proc, started in running:
            results[name] = finish_hang_scenario(proc, started)
    return results
