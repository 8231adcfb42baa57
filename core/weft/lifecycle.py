"""How the processes of a job end: exit records, the meeting at exit, and the launcher watchdog.

Three guarantees rest on this module:

* **A rank that exits ends the job.** At exit every rank first meets the others through the
  process group's *store* (``exiting/<rank>`` holds how it ends). Only when every rank is ending
  cleanly does weft run the backend's drain barrier and destroy the process group. Otherwise the
  process group is *left behind*: never destroyed nor deallocated, so the process exits at once
  with its own status, its sockets close, and peers blocked in a collective fail fast with
  "connection closed" instead of waiting for the collective timeout.
* **Exit records.** A worker started by weft's launcher writes one small JSON record (rank, how
  it ended, when) into the folder named by ``WEFT_EXIT_RECORDS``; the launcher's summary orders
  ranks by who ended first, so the root cause is named, even a rank that exited with code 0.
* **No orphans.** A worker watches its launcher (:func:`watch_launcher`); when the launcher dies,
  even by SIGKILL, the worker says so on stderr, sends itself SIGTERM and exits shortly after.

Nothing here runs per step: the watchdog is one daemon thread polling every half second.

.. versionadded:: 0.3
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from typing import Any

#: Folder where workers started by weft's launcher leave their exit records.
EXIT_RECORDS_ENV = "WEFT_EXIT_RECORDS"
#: Seconds between two looks at the launcher's pid.
WATCH_INTERVAL_S = 0.5
#: Seconds an orphaned worker is given to stop on SIGTERM before it exits hard.
ORPHAN_GRACE_S = 2.0
#: Exit status of a worker that stopped because its launcher died.
EXIT_ORPHANED = 1

# Words of a backend error that mean a peer went away (rather than a bug in this rank).
_PEER_LOSS_WORDS = ("connection closed", "connection reset", "reset by peer", "closed by peer", "broken pipe")

_ending: dict[str, Any] | None = None  # how this process is ending, once known
_left_behind: list[Any] = []  # process groups deliberately never released
_watchdog: threading.Thread | None = None


# ---------------------------------------------------------------------- how this process ends


def exit_code_of(exc: SystemExit) -> int:
    """The status ``raise SystemExit(code)`` gives the process (as the interpreter computes it)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1  # sys.exit("message") prints the message and exits 1


def is_peer_loss(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another rank went away or never came."""
    from weft.errors import CollectiveTimeoutError

    if isinstance(exc, CollectiveTimeoutError):
        return True
    text = str(exc).lower()
    return any(word in text for word in _PEER_LOSS_WORDS)


def note_exit(code: int) -> dict[str, Any]:
    """Record that this process is ending with status ``code`` (``0``: cleanly)."""
    return _note(f"exited with code {code}", code, "clean" if code == 0 else "own")


def note_exception(exc: BaseException) -> dict[str, Any]:
    """Record that this process is ending because ``exc`` was not caught."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    how = f"raised {type(exc).__name__}" + (f": {first_line[:300]}" if first_line else "")
    return _note(how, 1, "peer" if is_peer_loss(exc) else "own")


def note_signal(signum: int) -> dict[str, Any]:
    """Record that this process is ending because it received signal ``signum``."""
    return _note(f"was stopped by {signal.Signals(signum).name}", 128 + signum, "stopped")


def _note(how: str, code: int, cause: str) -> dict[str, Any]:
    global _ending
    if _ending is None:  # the first reason wins: an exception, then the SystemExit it may cause
        _ending = {"how": how, "code": code, "cause": cause, "time": time.time(), "pid": os.getpid()}
    return _ending


def ending() -> dict[str, Any] | None:
    """How this process is ending, when it has been noted (``None`` while it runs, or when unknown)."""
    return _ending


def ending_is_clean() -> bool:
    """Whether nothing noted says this process is ending badly (unknown counts as clean)."""
    return _ending is None or _ending["cause"] == "clean"


# ---------------------------------------------------------------------- exit records (launcher summary)


def write_exit_record(folder: str | None = None) -> None:
    """Write this worker's exit record into ``folder`` (default: ``WEFT_EXIT_RECORDS``); never raises."""
    folder = folder or os.environ.get(EXIT_RECORDS_ENV)
    if not folder or _ending is None:
        return
    rank = os.environ.get("RANK", "?")
    record = dict(_ending, rank=rank, local_rank=os.environ.get("LOCAL_RANK"), attempt=os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    path = os.path.join(folder, f"rank{rank}.json")
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
    except OSError:  # a summary detail must never change how the worker ends
        pass


def read_exit_records(folder: str) -> dict[int, dict[str, Any]]:
    """The exit records in ``folder``, by global rank (latest restart attempt only)."""
    records: dict[int, dict[str, Any]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return records
    for name in names:
        if not (name.startswith("rank") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                record = json.load(f)
            records[int(record["rank"])] = record
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if records:
        latest = max(str(r.get("attempt", "0")) for r in records.values())
        records = {rank: r for rank, r in records.items() if str(r.get("attempt", "0")) == latest}
    return records


# ---------------------------------------------------------------------- the meeting at exit


def announce_and_meet(store: Any, rank: int, world_size: int, timeout_s: float) -> dict[int, dict[str, Any]] | None:
    """Say through ``store`` how this rank ends, then wait (up to ``timeout_s``) for every rank's word.

    A rank that is not ending cleanly only announces itself: it will not take part in a
    backend operation at exit, so there is nothing to meet for.

    :returns: every rank's announcement, or ``None`` when some rank did not announce in time
        (it is still running, e.g. waiting in a collective) or the store cannot be reached.
    """
    mine = dict(_ending or {"how": "exited", "code": None, "cause": "clean", "time": time.time()}, rank=rank)
    try:
        store.set(f"exiting/{rank}", json.dumps(mine))
        if mine["cause"] != "clean" or timeout_s <= 0:
            return None
        keys = [f"exiting/{r}" for r in range(world_size)]
        deadline = time.monotonic() + timeout_s
        # Polled rather than store.wait(timeout): a wait that runs out logs socket warnings.
        while not store.check(keys):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return {r: json.loads(store.get(keys[r])) for r in range(world_size)}
    except Exception:  # noqa: BLE001 - the store is gone (its host exited): no meeting
        return None


def describe_peer_exits(store: Any = None, rank: int | None = None, world_size: int | None = None) -> str | None:
    """Which other ranks have ended and how, read from the store (``None`` when none has, or it cannot tell).

    Meant for a rank whose collective failed with "connection closed": the answer names the
    rank that left, e.g. ``"rank 1 exited with code 0 4.2s ago"``. Without arguments it reads
    the store of the process group weft created.
    """
    if store is None:
        from weft import process_group

        group = process_group._group
        if group is None or group.store is None:
            return None
        store, rank, world_size = group.store, group.rank, group.world_size
    try:
        parts = []
        for r in range(world_size or 0):
            key = f"exiting/{r}"
            if r == rank or not store.check([key]):
                continue
            record = json.loads(store.get(key))
            ago = max(0.0, time.time() - float(record.get("time", time.time())))
            parts.append(f"rank {r} {record.get('how', 'exited')} {ago:.1f}s ago")
    except Exception:  # noqa: BLE001 - the store may be gone with the rank that hosted it
        return None
    return "; ".join(parts) or None


def leave_behind(process_group: Any) -> None:
    """Keep ``process_group`` alive until the process ends, so that it is never destroyed.

    Destroying (or deallocating) a gloo process group joins its worker threads, which wait for
    any unfinished collective for up to the collective timeout; meanwhile this process, and its
    sockets, stay alive and the peers never learn that it left. An extra reference that nothing
    releases keeps the interpreter's final clean-up from deallocating it; the operating system
    closes its sockets when the process exits.
    """
    if process_group is None:
        return
    _left_behind.append(process_group)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(process_group))


def left_behind() -> bool:
    """Whether this process has left its process group behind (it is exiting)."""
    return bool(_left_behind)


# ---------------------------------------------------------------------- launcher watchdog


def watch_launcher(rank: Any = None, interval_s: float = WATCH_INTERVAL_S, grace_s: float = ORPHAN_GRACE_S) -> bool:
    """Stop this worker when the process that launched it dies (started once per process).

    The launcher is this process's parent now. When the parent changes (it died, SIGKILL
    included, and the worker was re-parented), one line naming the rank and the lost
    launcher's pid goes to stderr, the worker sends itself SIGTERM (its handlers run, if any),
    and exits hard after ``grace_s`` seconds if it is still alive (e.g. blocked in a collective).

    :returns: whether a watchdog runs (``False`` when this process has no launcher to watch).
    """
    global _watchdog
    if _watchdog is not None:
        return True
    launcher = os.getppid()
    if launcher <= 1:
        return False
    label = os.environ.get("RANK", "?") if rank is None else rank

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(interval_s)
        message = f"weft: rank {label} (pid {os.getpid()}) lost its launcher (pid {launcher}); stopping.\n"
        try:
            os.write(2, message.encode())  # os.write: no lock a stopped main thread could hold
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(EXIT_ORPHANED)

    _watchdog = threading.Thread(target=watch, name="weft-launcher-watchdog", daemon=True)
    _watchdog.start()
    return True


def has_launcher_agent() -> bool:
    """Whether a torch elastic agent (torchrun, ``weft run``, ``fabric.launch()``) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "TORCHELASTIC_RESTART_COUNT" in os.environ


def flush_streams() -> None:
    """Flush stdout and stderr, ignoring closed streams."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
