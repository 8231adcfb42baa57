"""Distributed guarantees, each shown with real two-rank CPU jobs (gloo) started as users start them.

* Loopback: a single-node job's processes listen on loopback only, gloo's transport included,
  even where the hostname resolves to the machine's network address (as on cluster nodes).
* Same-call check: a rank passing another shape, dtype, reduce op, source rank or collective
  makes every rank raise ``MisuseValueError`` naming both ranks' calls, instead of gloo
  aborting the process or mixing the data.
* Saves from the wrong rank: under DDP, ``fabric.save`` on rank 1 alone raises on rank 1
  (naming rank 0) instead of writing nothing; rank 0 alone, or every rank, writes once.
* Timeouts: bad ``timeout``/``collective_timeout`` values and environment variables raise
  ``ConfigurationError`` naming the argument or variable.

Every check has a broken variant (``WEFT_TEST_BREAK=...`` read by the job scripts, or the
old code put back with ``monkeypatch``) and a test showing the check catches it.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import weft.collective_settings as collective_settings
import weft.distributed as wdist
import weft.process_group as process_group
import weft.transport as transport
from weft import registry
from weft.errors import ConfigurationError

pytestmark = pytest.mark.skipif("ddp" not in registry.names("strategies"), reason="weft-ddp is not installed")

SCRIPTS = Path(__file__).parent / "scripts"
_TCP_LISTEN = "0A"


# ---------------------------------------------------------------------- jobs and their sockets


def _job_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "MASTER_", "TORCHELASTIC", "LT_", "GLOO_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class _Job:
    """A job in its own session; its output collected line by line as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(list(self.lines))

    def wait_for(self, pattern: str, count: int, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and self.proc.poll() is None:
            if len(re.findall(pattern, self.output)) >= count:
                return True
            time.sleep(0.05)
        return len(re.findall(pattern, self.output)) >= count

    def finish(self, timeout: float = 90) -> dict:
        try:
            self.proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            self.stop()
            timed_out = True
        self._reader.join(timeout=10)
        return {"returncode": self.proc.returncode, "timed_out": timed_out, "seconds": round(time.perf_counter() - self.started, 1), "output": self.output}

    def stop(self) -> None:
        pids = _descendants(self.proc.pid) | {int(p) for p in re.findall(r"pid=(\d+)", self.output)}
        for pid in pids:  # only this job's own processes, by id
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(timeout=10)


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (read from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(children)
        frontier.extend(children)
    return found


def _decode_address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc prints each 32-bit word of the address in host (little-endian) byte order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    text = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{text}:{int(port, 16)}"


def listening_addresses(pids) -> list[str]:
    """Every TCP socket in LISTEN state owned by one of ``pids``, as ``"address:port"``.

    Reads ``/proc/<pid>/fd`` for the processes' socket inodes and ``/proc/<pid>/net/tcp{,6}``
    for the sockets' local addresses, so it needs neither ``ss`` nor ``netstat``.
    """
    found = []
    for pid in pids:
        inodes = set()
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # the process has gone
            continue
        for fd in descriptors:
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile (the listing's own descriptor, for one)
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        for table in ("tcp", "tcp6"):
            try:
                rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                if fields[3] == _TCP_LISTEN and fields[9] in inodes:
                    found.append(_decode_address(fields[1]))
    return sorted(set(found))


def _is_loopback(entry: str) -> bool:
    return ipaddress.ip_address(entry.rsplit(":", 1)[0].strip("[]")).is_loopback


def _network_address() -> tuple[str, str] | None:
    """This machine's non-loopback IPv4 address and its interface, if it has one."""
    for name, address in transport.interface_addresses().items():
        if not ipaddress.ip_address(address).is_loopback:
            return address, name
    return None


def _can_fake_hostname() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname weft-probe"], capture_output=True, timeout=30)
    return probe.returncode == 0


NET_JOB = SCRIPTS / "net_job.py"
NET_COMMANDS = {
    "fabric.launch()": [sys.executable, str(NET_JOB), "launch"],
    "weft run": [sys.executable, "-m", "weft.cli", "run", "--accelerator", "cpu", "--strategy", "ddp", "--devices", "2", str(NET_JOB), "run"],
    "ddp_spawn": [sys.executable, str(NET_JOB), "spawn"],
}


def run_net_job(argv: list[str], tmp_path: Path, hostname: str | None = None, env: dict[str, str] | None = None) -> dict:
    """Run a net job; while both ranks wait, list the sockets its processes listen on.

    ``hostname``: run the job in a UTS namespace of its own whose hostname is that address,
    so that the hostname resolves to it (the condition of cluster nodes).
    """
    release = tmp_path / "release"
    if hostname:
        argv = ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"', "sh", *argv]
    job = _Job(argv, _job_env({"WEFT_TEST_RELEASE": str(release), **(env or {})}))
    try:
        ready = job.wait_for(r"WEFT-TEST-READY rank=\d", 2, timeout=90)
        pids = _descendants(job.proc.pid) | {int(p) for p in re.findall(r"WEFT-TEST-READY rank=\d+ pid=(\d+)", job.output)}
        addresses = listening_addresses(pids) if ready else []
    finally:
        release.touch()
    outcome = job.finish(timeout=90)
    outcome.update(ready=ready, addresses=addresses)
    return outcome


def _net_details(r: dict) -> str:
    return f"listening: {r['addresses']}\nexit {r['returncode']} after {r['seconds']}s\n{r['output'][-3000:]}"


@pytest.fixture(scope="module")
def network_address():
    if not _can_fake_hostname():
        pytest.skip("cannot make the hostname resolve to a network address here (needs `unshare --uts`)")
    found = _network_address()
    if found is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    return found


# ---------------------------------------------------------------------- 1. loopback by default


def test_listening_addresses_sees_a_socket_of_this_process():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert f"127.0.0.1:{port}" in listening_addresses([os.getpid()])
    assert f"127.0.0.1:{port}" not in listening_addresses([os.getpid()])


@pytest.mark.timeout(240)
@pytest.mark.parametrize("launcher", list(NET_COMMANDS))
def test_single_node_job_listens_on_loopback_only(launcher, network_address, tmp_path):
    r = run_net_job(NET_COMMANDS[launcher], tmp_path, hostname=network_address[0])
    assert r["ready"] and r["returncode"] == 0, _net_details(r)
    assert len(r["addresses"]) >= 2, _net_details(r)  # at least each rank's gloo transport
    assert all(_is_loopback(a) for a in r["addresses"]), _net_details(r)


@pytest.mark.timeout(240)
def test_broken_variant_listens_on_the_network_address(network_address, tmp_path):
    """Without weft's choice (WEFT_TEST_BREAK=loopback), gloo listens where the hostname resolves."""
    r = run_net_job(NET_COMMANDS["fabric.launch()"], tmp_path, hostname=network_address[0], env={"WEFT_TEST_BREAK": "loopback"})
    assert r["ready"] and r["returncode"] == 0, _net_details(r)
    assert any(a.startswith(network_address[0] + ":") for a in r["addresses"]), _net_details(r)


@pytest.mark.timeout(240)
def test_an_interface_the_user_names_is_respected(network_address, tmp_path):
    r = run_net_job(NET_COMMANDS["fabric.launch()"], tmp_path, env={"GLOO_SOCKET_IFNAME": network_address[1]})
    assert r["ready"] and r["returncode"] == 0, _net_details(r)
    assert any(a.startswith(network_address[0] + ":") for a in r["addresses"]), _net_details(r)
    assert f"ifname={network_address[1]}" in r["output"], _net_details(r)


def test_interface_choice(monkeypatch):
    """Single node: loopback; several nodes: the interface that routes to the main address."""
    for variable in ("GLOO_SOCKET_IFNAME", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(variable, "")  # recorded, so that what the test sets is undone after it
        monkeypatch.delenv(variable)
    loopback = transport.loopback_interface()
    assert loopback and transport.choose_transport_interface("127.0.0.1", 29500, 2) == loopback
    assert os.environ["GLOO_SOCKET_IFNAME"] == loopback
    found = _network_address()
    if found is not None:
        address, interface = found
        monkeypatch.delenv("GLOO_SOCKET_IFNAME")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # 2 of 4 ranks here: several nodes
        assert transport.choose_transport_interface(address, 29500, 4) == interface
        monkeypatch.delenv("GLOO_SOCKET_IFNAME")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # every rank here: one node, whatever the address
        assert transport.choose_transport_interface(address, 29500, 4) == loopback
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")  # the user's choice wins
    assert transport.choose_transport_interface("127.0.0.1", 29500, 2) is None
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth7"


# ---------------------------------------------------------------------- 2. collective mismatches

COLLECTIVE_JOB = SCRIPTS / "collective_mismatch.py"
#: Long enough that a mismatch caught by waiting out a timeout would fail the promptness bound.
MISMATCH_COLLECTIVE_TIMEOUT_S = 60

# case -> what every rank's error must say
MISMATCHES = {
    "gather_shape": ["rank 0 passes float32 (4, 3), rank 1 passes float32 (2, 3)", "pad to a common shape"],
    "gather_sync_grads_shape": ["rank 0 passes float32 (4, 3), rank 1 passes float32 (2, 3)"],
    "gather_dtype": ["rank 0 passes float32 (4, 3), rank 1 passes float64 (4, 3)", "cast to a common dtype"],
    "reduce_shape": ["rank 0 passes float32 (4, 3), rank 1 passes float32 (2, 3)"],
    "reduce_dtype": ["rank 0 passes float32 (4, 3), rank 1 passes int64 (4, 3)"],
    "reduce_op": ["rank 0 passes op='sum', rank 1 passes op='max'"],
    "broadcast_src": ["rank 0 passes src=0, rank 1 passes src=1"],
    "different_ops": ["rank 0 calls all_reduce(float32 (3,)", "rank 1 calls all_gather(float32 (3,)"],
}
# (case, WEFT_TEST_BREAK, WEFT_DEBUG_COLLECTIVES). The cases with the check on and debug off run in
# turn in one job (a mismatch raises on both ranks at once, so the next case starts in step);
# the others each in a job of their own (a broken variant may abort the process).
TOGETHER = ["same", "broadcast_ok", *MISMATCHES]
COLLECTIVE_RUNS = [("broadcast_ok", "", "1"), ("gather_shape", "collective_check", "0"), ("reduce_op", "collective_check", "0"), ("gather_shape", "", "1")]
#: A mismatch must be found at once, not by waiting out the collective timeout.
PROMPT_CASE_S = 10


def _collective_env(broken: str, debug: str) -> dict[str, str]:
    env = {"WEFT_COLLECTIVE_TIMEOUT": str(MISMATCH_COLLECTIVE_TIMEOUT_S), "WEFT_DEBUG_COLLECTIVES": debug}
    if broken:
        env["WEFT_TEST_BREAK"] = broken
    return env


def _one_case(job: dict, case: str) -> dict:
    """The outcome of ``case`` in a job that ran several: its lines, and a status as if it ran alone."""
    lines = [line for line in job["output"].splitlines() if f" case={case} " in line or line.startswith("WEFT-TEST-PID")]
    raised = any(line.startswith("WEFT-TEST-ERROR") for line in lines)
    seconds = [float(m) for m in re.findall(rf"WEFT-TEST-SECONDS rank=\d case={case} ([\d.]+)", job["output"])]
    return {
        **job,
        "output": "\n".join(lines) + "\n--- whole job ---\n" + job["output"][-2000:],
        "returncode": (job["returncode"] or 1) if raised else (0 if len(seconds) == 2 else job["returncode"]),
        "case_seconds": max(seconds) if len(seconds) == 2 else None,
    }


@pytest.fixture(scope="module")
def collective_outcomes():
    """Every run of the collective job, two jobs at a time (2 CPU cores)."""
    together = _Job([sys.executable, str(COLLECTIVE_JOB), ",".join(TOGETHER)], _job_env(_collective_env("", "0")))
    first = _Job([sys.executable, str(COLLECTIVE_JOB), COLLECTIVE_RUNS[0][0]], _job_env(_collective_env(*COLLECTIVE_RUNS[0][1:])))
    job = together.finish(timeout=240)
    outcomes = {(case, "", "0"): _one_case(job, case) for case in TOGETHER}
    outcomes[COLLECTIVE_RUNS[0]] = first.finish(timeout=120)
    rest = COLLECTIVE_RUNS[1:]
    for i in range(0, len(rest), 2):
        batch = rest[i : i + 2]
        jobs = [(run, _Job([sys.executable, str(COLLECTIVE_JOB), run[0]], _job_env(_collective_env(*run[1:])))) for run in batch]
        for run, started in jobs:
            outcomes[run] = started.finish(timeout=120)
    return outcomes


def _details(r: dict) -> str:
    return f"exit {r['returncode']} after {r['seconds']}s\n{r['output'][-4000:]}"


@pytest.mark.timeout(900)
def test_matching_calls_pass(collective_outcomes):
    r = collective_outcomes[("same", "", "0")]
    assert r["returncode"] == 0, _details(r)
    assert len(re.findall(r"WEFT-TEST-RESULT rank=\d case=same 12\.0", r["output"])) == 2, _details(r)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("debug", ["0", "1"])
def test_broadcast_delivers_the_sources_object(collective_outcomes, debug):
    r = collective_outcomes[("broadcast_ok", "", debug)]
    assert r["returncode"] == 0, _details(r)
    assert len(re.findall(r"WEFT-TEST-RESULT rank=\d case=broadcast_ok 2000", r["output"])) == 2, _details(r)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", list(MISMATCHES))
def test_mismatch_raises_on_every_rank_naming_both_calls(collective_outcomes, case):
    r = collective_outcomes[(case, "", "0")]
    assert not r["timed_out"] and r["returncode"] not in (0, None), _details(r)
    assert r["case_seconds"] is not None and r["case_seconds"] < PROMPT_CASE_S, _details(r)  # at once, not by a timeout
    assert "SIGABRT" not in r["output"] and "terminate called" not in r["output"], _details(r)
    for rank in (0, 1):
        errors = re.findall(rf"WEFT-TEST-ERROR rank={rank} case={case} type=MisuseValueError: (.*)", r["output"])
        assert errors, _details(r)
        for expected in MISMATCHES[case]:
            assert expected in errors[0], _details(r)
    assert f"WEFT-TEST-RESULT rank=0 case={case} " not in r["output"], _details(r)
    assert f"WEFT-TEST-RESULT rank=1 case={case} " not in r["output"], _details(r)


@pytest.mark.timeout(900)
def test_broken_variant_aborts_or_mixes_data(collective_outcomes):
    """With the check off, a shape mismatch kills a rank inside gloo (or hands back mixed
    rows), and a reduce-op mismatch returns a wrong result without any error."""
    shape = collective_outcomes[("gather_shape", "collective_check", "0")]
    assert "MisuseValueError" not in shape["output"], _details(shape)
    assert "SIGABRT" in shape["output"] or "WEFT-TEST-RESULT" in shape["output"], _details(shape)
    op = collective_outcomes[("reduce_op", "collective_check", "0")]
    assert op["returncode"] == 0 and "WEFT-TEST-ERROR" not in op["output"], _details(op)
    assert len(re.findall(r"WEFT-TEST-RESULT rank=\d", op["output"])) == 2, _details(op)


@pytest.mark.timeout(900)
def test_debug_mode_still_lists_call_sites(collective_outcomes):
    r = collective_outcomes[("gather_shape", "", "1")]
    assert r["returncode"] not in (0, None) and "SIGABRT" not in r["output"], _details(r)
    assert "does not match across ranks" in r["output"], _details(r)
    assert re.search(r"rank 1: all_gather\(shape=\(2, 3\).*collective_mismatch\.py:\d+", r["output"]), _details(r)


# ---------------------------------------------------------------------- 3. saves from the wrong rank

SAVE_JOB = SCRIPTS / "save_rank_job.py"
SAVE_COLLECTIVE_TIMEOUT_S = 5


#: Run in turn in one job; rank1_only raises, so it comes last.
SAVE_CASES = ("rank0_only", "all_ranks", "rank1_only")


def _save_case(job: dict, case: str, folder: Path) -> dict:
    """The outcome of ``case`` in a job that ran several: its lines and the files it wrote."""
    lines = [line for line in job["output"].splitlines() if f" case={case} " in line]
    return {
        **job,
        "folder": folder / case,
        "case_output": "\n".join(lines),
        "output": "\n".join(lines) + "\n--- whole job ---\n" + job["output"][-3000:],
        "writes": re.findall(rf"WEFT-TEST-WRITE case={case} rank=(\d+) file=(\S+)", job["output"]),
    }


@pytest.fixture(scope="module")
def save_outcomes(tmp_path_factory):
    """The save cases in one two-rank job, and the broken variant of rank1_only in another, side by side."""
    env = {"WEFT_COLLECTIVE_TIMEOUT": str(SAVE_COLLECTIVE_TIMEOUT_S)}
    checked, broken = tmp_path_factory.mktemp("saves"), tmp_path_factory.mktemp("saves_broken")
    together = _Job([sys.executable, str(SAVE_JOB), ",".join(SAVE_CASES), str(checked)], _job_env(env))
    unchecked = _Job([sys.executable, str(SAVE_JOB), "rank1_only", str(broken)], _job_env({**env, "WEFT_TEST_BREAK": "save_rank"}))
    job, broken_job = together.finish(timeout=150), unchecked.finish(timeout=150)
    outcomes = {case: _save_case(job, case, checked) for case in SAVE_CASES}
    outcomes["broken"] = _save_case(broken_job, "rank1_only", broken)
    return outcomes


@pytest.mark.timeout(300)
def test_save_on_rank_1_alone_raises_naming_rank_0(save_outcomes):
    r = save_outcomes["rank1_only"]
    assert not r["timed_out"] and r["returncode"] not in (0, None), _details(r)
    error = re.search(r"WEFT-TEST-ERROR case=rank1_only rank=1 type=MisuseError: (.*)", r["output"])
    assert error, _details(r)
    assert "was called on rank 1 but rank 0 did not make the same call" in error[1], _details(r)
    assert "x.ckpt" in error[1] and f"within {SAVE_COLLECTIVE_TIMEOUT_S}s" in error[1], _details(r)
    assert "call fabric.save on every rank or on rank 0" in error[1], _details(r)
    assert not (r["folder"] / "x.ckpt").exists() and r["writes"] == []


@pytest.mark.timeout(300)
def test_broken_variant_loses_the_save_silently(save_outcomes):
    r = save_outcomes["broken"]
    assert r["returncode"] == 0 and "WEFT-TEST-ERROR" not in r["output"], _details(r)
    assert not (r["folder"] / "x.ckpt").exists() and r["writes"] == []


@pytest.mark.timeout(300)
def test_save_on_rank_0_alone_writes(save_outcomes):
    r = save_outcomes["rank0_only"]
    assert "WEFT-TEST-ERROR" not in r["case_output"] and r["case_output"].count("WEFT-TEST-DONE") == 2, _details(r)
    assert r["writes"] == [("0", "x.ckpt")], _details(r)
    assert len(re.findall(r"WEFT-TEST-LOADED case=rank0_only rank=\d same=True step=7", r["output"])) == 2, _details(r)


@pytest.mark.timeout(300)
def test_save_on_every_rank_writes_once_from_rank_0(save_outcomes):
    r = save_outcomes["all_ranks"]
    assert "WEFT-TEST-ERROR" not in r["case_output"] and r["case_output"].count("WEFT-TEST-DONE") == 2, _details(r)
    # Three saves of x.ckpt by every rank, each with a rank-0-only save in between: each written once.
    assert r["writes"] == [("0", "x.ckpt"), ("0", "other.ckpt")] * 3, _details(r)
    assert len(re.findall(r"WEFT-TEST-LOADED case=all_ranks rank=\d same=True step=2", r["output"])) == 2, _details(r)


def test_match_rank_zero_call_without_a_process_group_does_nothing():
    wdist.match_rank_zero_call("fabric.save('x')", key="save:x")


# ---------------------------------------------------------------------- 4. timeouts

BAD_TIMEOUTS = [0, -1, -0.5, math.nan, math.inf, -math.inf, "10", True, False, [10], datetime.timedelta(0), datetime.timedelta(seconds=-3), 1e300]
BAD_ENV_TIMEOUTS = ["0", "-1", "nan", "inf", "-inf", "ten", "1e300", "True"]


def _old_seconds(value, env, default, name="timeout"):
    """weft's parsing before this round: let inf through, and named no variable for NaN."""
    if value is None:
        text = os.environ.get(env)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"{env}={text!r} must be a number of seconds") from None
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return datetime.timedelta(seconds=float(value))
    raise ConfigurationError(f"timeout={value!r} must be a positive number of seconds or a datetime.timedelta")


def _ddp_strategy(argument: str, value) -> None:
    from weft_ddp.strategy import DDPStrategy

    DDPStrategy(**{argument: value})


def _bad_timeout_problems(make_ddp_strategy=_ddp_strategy) -> list[str]:
    """What the timeout checks let through (empty when all is well)."""
    problems = []
    for argument in ("timeout", "collective_timeout"):
        for value in BAD_TIMEOUTS:
            try:
                wdist.init_process_group(None, **{argument: value})  # parsing comes first
                problems.append(f"{argument}={value!r} accepted")
            except ConfigurationError as exc:
                if f"{argument}={value!r}" not in str(exc):
                    problems.append(f"{argument}={value!r}: message does not name it: {exc}")
            except Exception as exc:  # noqa: BLE001 - anything else got past the parsing
                problems.append(f"{argument}={value!r}: {type(exc).__name__}: {exc}")
    for variable in (wdist.INIT_TIMEOUT_ENV, wdist.COLLECTIVE_TIMEOUT_ENV):
        for text in BAD_ENV_TIMEOUTS:
            os.environ[variable] = text
            try:
                wdist.init_process_group(None)
                problems.append(f"{variable}={text!r} accepted")
            except ConfigurationError as exc:
                if f"{variable}={text!r}" not in str(exc):
                    problems.append(f"{variable}={text!r}: message does not name the variable: {exc}")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{variable}={text!r}: {type(exc).__name__}: {exc}")
            finally:
                del os.environ[variable]
    for argument in ("timeout", "init_timeout"):
        for value in BAD_TIMEOUTS:
            try:
                make_ddp_strategy(argument, value)
                problems.append(f"DDPStrategy({argument}={value!r}) accepted")
            except ConfigurationError as exc:
                if f"{argument}={value!r}" not in str(exc):
                    problems.append(f"DDPStrategy({argument}={value!r}): message does not name it: {exc}")
    return problems


def test_bad_timeouts_raise_naming_the_argument_or_variable(monkeypatch):
    for variable in (wdist.INIT_TIMEOUT_ENV, wdist.COLLECTIVE_TIMEOUT_ENV):
        monkeypatch.delenv(variable, raising=False)
    assert _bad_timeout_problems() == []


def test_broken_variant_lets_bad_timeouts_through(monkeypatch):
    def old_check(instance, attribute, value):
        if value is None or isinstance(value, datetime.timedelta):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(f"{attribute.name}={value!r} must be a positive number of seconds or a timedelta")

    for variable in (wdist.INIT_TIMEOUT_ENV, wdist.COLLECTIVE_TIMEOUT_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(process_group, "_seconds", _old_seconds)  # where init_process_group looks it up

    def old_ddp_strategy(argument, value):  # the validator DDPStrategy had, on the same values
        old_check(None, type("Field", (), {"name": argument}), value)

    problems = _bad_timeout_problems(old_ddp_strategy)
    assert any(p.startswith("timeout=inf") for p in problems), problems
    assert any(p.startswith("DDPStrategy(timeout=nan) accepted") for p in problems), problems
    assert "WEFT_COLLECTIVE_TIMEOUT='nan': message does not name the variable" in "\n".join(problems)


def test_collective_timeout_for_plugins(monkeypatch):
    monkeypatch.delenv(wdist.COLLECTIVE_TIMEOUT_ENV, raising=False)
    assert wdist.collective_timeout() == wdist.DEFAULT_COLLECTIVE_TIMEOUT
    assert wdist.collective_timeout(7) == datetime.timedelta(seconds=7)
    for value in BAD_TIMEOUTS:
        with pytest.raises(ConfigurationError, match=re.escape(f"timeout={value!r}")):
            wdist.collective_timeout(value)
    monkeypatch.setenv(wdist.COLLECTIVE_TIMEOUT_ENV, "inf")
    with pytest.raises(ConfigurationError, match="WEFT_COLLECTIVE_TIMEOUT='inf'"):
        wdist.collective_timeout()


def test_good_timeouts_are_accepted(monkeypatch):
    monkeypatch.setenv(wdist.COLLECTIVE_TIMEOUT_ENV, "2.5")
    assert collective_settings._seconds(None, wdist.COLLECTIVE_TIMEOUT_ENV, wdist.DEFAULT_COLLECTIVE_TIMEOUT) == datetime.timedelta(seconds=2.5)
    assert collective_settings._seconds(3, "", wdist.DEFAULT_COLLECTIVE_TIMEOUT) == datetime.timedelta(seconds=3)
    monkeypatch.setenv(wdist.COLLECTIVE_TIMEOUT_ENV, "")
    assert collective_settings._seconds(None, wdist.COLLECTIVE_TIMEOUT_ENV, wdist.DEFAULT_COLLECTIVE_TIMEOUT) == wdist.DEFAULT_COLLECTIVE_TIMEOUT


@pytest.mark.timeout(120)
def test_a_bad_timeout_variable_stops_a_real_job_naming_it():
    env = {"WEFT_COLLECTIVE_TIMEOUT": "nan"}
    r = _Job([sys.executable, str(COLLECTIVE_JOB), "same"], _job_env(env)).finish(timeout=90)
    assert r["returncode"] not in (0, None), _details(r)
    assert "ConfigurationError: WEFT_COLLECTIVE_TIMEOUT='nan' is not a positive, finite number of seconds" in r["output"], _details(r)
