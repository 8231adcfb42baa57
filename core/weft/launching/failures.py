"""How a job's workers ended, told root cause first (:func:`describe_failures`)."""

from __future__ import annotations

import signal
from typing import Any


def describe_failures(failures: dict[int, Any], records: dict[int, dict[str, Any]] | None = None) -> str:
    """A readable account of how a job's workers ended, root cause first.

    :param failures: elastic ``ProcessFailure`` records of the workers that ended non-zero.
    :param records: weft's exit records by rank (:mod:`weft.lifecycle`), when the workers wrote them.

    Ranks are ordered by who ended first among those that failed on their own; ranks whose
    collective failed because a peer left come next, and workers the launcher itself stopped
    (SIGTERM) after the first failure last. A rank that exited with code 0 while the others
    still needed it (they then failed waiting for it) is the root cause, and is named as such.
    """
    records = records or {}

    def group(rank: int, failure: Any) -> int:
        cause = records.get(rank, {}).get("cause")
        if failure is None:
            return 0  # ended cleanly, before the others failed (filtered below)
        if cause == "peer":
            return 1
        if failure.exitcode == -signal.SIGTERM and cause is None:
            return 2  # stopped by the launcher (it sends SIGTERM)
        return 0

    def when(rank: int, failure: Any) -> float:
        record = records.get(rank)
        return float(record["time"]) if record and "time" in record else float(failure.timestamp)

    entries = [(group(r, f), when(r, f), r, f) for r, f in failures.items()]
    first_failure = min((t for _, t, _, _ in entries), default=float("inf"))
    if not any(g == 0 for g, *_ in entries):
        # Nobody failed on their own: look for a rank that left cleanly while the others waited for it.
        for rank, record in records.items():
            if rank not in failures and record.get("cause") == "clean" and float(record.get("time", 0)) <= first_failure:
                entries.append((0, float(record["time"]), rank, None))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    lines = []
    for _, _, rank, failure in entries:
        record = records.get(rank, {})
        if failure is None:
            lines.append(f"rank {rank} (local rank {record.get('local_rank')}, pid {record.get('pid')}) {record.get('how', 'exited with code 0')}")
            continue
        if group(rank, failure) == 2:
            what = "was stopped after the failure"
        elif failure.exitcode < 0:
            what = f"was killed by signal {failure.signal_name()}"
        else:
            what = f"exited with code {failure.exitcode}"
        lines.append(f"rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) {what}")
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", "")
        if not message and record.get("how", "").startswith("raised"):
            message = record["how"]
        if message and "pytorch.org/docs/stable/elastic/errors" not in str(message) and not str(message).startswith("Signal "):
            lines.append("  " + str(message).strip().replace("\n", "\n  "))
    root_group, _, root, root_failure = entries[0]
    if root_failure is None:
        waiting = sorted(r for g, _, r, _ in entries if g == 1)
        others = sorted(r for _, _, r, f in entries if f is not None)
        if waiting:
            tail = f"while rank{'s' if len(waiting) > 1 else ''} {', '.join(map(str, waiting))} waited for it in a collective"
        else:
            tail = f"while rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} still ran"
        headline = f"rank {root} {records[root].get('how', 'exited with code 0')} {tail}; the job was stopped."
    else:
        headline = f"rank {root} failed; the job was stopped."
    return headline + "\n" + "\n".join(lines)
