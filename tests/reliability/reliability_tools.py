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


# ---------------------------------------------------------------------- process lifecycle jobs

LIFECYCLE_JOB = SCRIPTS / "lifecycle_job.py"
#: How each launcher starts the two-rank lifecycle job.
LAUNCHERS = {
    "python": lambda script, *args: [sys.executable, str(script), *args],
    "weft run": lambda script, *args: [
        sys.executable, "-m", "weft.cli", "run", "--accelerator", "cpu", "--strategy", "ddp", "--devices", "2", str(script), *args,
    ],
    "torchrun": lambda script, *args: [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--monitor-interval", "0.1", str(script), *args,
    ],
}


class Job:
    """A job started in its own session, its output collected as it comes (with the time of each line).

    Workers started by elastic launchers live in sessions of their own: :meth:`stop` ends them
    by the pids they printed (``WEFT-TEST-PID rank=R pid=P``), never by name.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        import threading

        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "TORCHELASTIC", "LT_"))}
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.argv = argv
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # ends when every writer (launcher and workers) has closed it
            self.lines.append((time.perf_counter(), line))

    @property
    def output(self) -> str:
        return "".join(line for _, line in list(self.lines))

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"WEFT-TEST-PID rank=\d+ pid=(\d+)", self.output)]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 90) -> bool:
        """Wait until ``pattern`` appears ``count`` times in the output (``False`` on timeout or exit)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if len(re.findall(pattern, self.output)) >= count:
                return True
            if self.proc.poll() is not None and not self._reader.is_alive():
                return False
            time.sleep(0.1)
        return False

    def when(self, pattern: str) -> float | None:
        """``perf_counter`` time at which a line matching ``pattern`` arrived."""
        for at, line in list(self.lines):
            if re.search(pattern, line):
                return at
        return None

    def workers_gone_within(self, seconds: float) -> float | None:
        """Seconds until every worker that printed its pid has exited, or ``None`` if some outlive ``seconds``."""
        start = time.perf_counter()
        pids = self.worker_pids()
        while time.perf_counter() - start < seconds:
            if not any(_alive(p) for p in pids):
                return time.perf_counter() - start
            time.sleep(0.05)
        return None

    def finish(self, limit_s: float = 90) -> dict:
        """Wait for the launcher, then for its workers; report exit code, timings and output."""
        try:
            self.proc.wait(timeout=max(0.0, limit_s - (time.perf_counter() - self.started)))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            self.stop()
        ended = time.perf_counter()
        gone = self.workers_gone_within(5)
        self._reader.join(timeout=5)
        left = [p for p in self.worker_pids() if _alive(p)]
        self.stop()
        exited = self.when(r"WEFT-TEST-EXIT")
        return {
            "returncode": self.proc.returncode,
            "timed_out": timed_out,
            "seconds": round(ended - self.started, 1),
            "seconds_after_exit": None if exited is None else round(ended - exited, 1),
            "ranks_started": len(self.worker_pids()),
            "ranks_left_running": len(left) if gone is None else 0,
            "output": self.output,
        }

    def stop(self) -> None:
        """Kill this job's launcher session and its workers (by the pids they printed)."""
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in self.worker_pids():
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def start_lifecycle_job(launcher: str, mode: str, env: dict[str, str] | None = None) -> Job:
    """Start the two-rank lifecycle job in ``mode`` with ``launcher`` (a key of :data:`LAUNCHERS`)."""
    return Job(LAUNCHERS[launcher](LIFECYCLE_JOB, mode), env)
