"""Print the reliability figures: kill-during-save trials and corrupt checkpoints, hang scenarios
and the seconds until every rank exited, exiting ranks under each launcher (default collective
timeout), orphans after the launcher is killed, listening sockets of a single-node job, bit flips
in a checkpoint, and bad inputs tried with how many gave clear errors.

Run: ``python tests/reliability/report.py`` (a few minutes on two cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bad_inputs import CASES, PENDING, installed, run_case  # noqa: E402
from reliability_tools import (  # noqa: E402
    HANG_SCENARIOS,
    LAUNCHERS,
    finish_hang_scenario,
    run_hang_scenarios,
    start_hang_scenario,
    start_lifecycle_job,
)


def kill_during_save(trials_per_mode: int = 8) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "scripts" / "kill_during_save.py"), "--trials", str(trials_per_mode)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("== crash-safe checkpoints (SIGKILL at random moments while saving)")
    k = kill_during_save()
    print(f"trials: {k['trials']}  (killed mid-write: {k['killed_mid_write']}, before any checkpoint: {k['no_checkpoint_yet']})")
    print(f"checkpoints left behind and checked: {k['checkpoints_checked']}")
    print(f"corrupt: {k['corrupt']}   newest complete one found: {k['newest_found']}/{k['trials']}")
    for mode, r in k["by_mode"].items():
        print(f"  {mode:10s} trials {r['trials']:3d}  corrupt {r['corrupt']}  newest found {r['newest_found']}")

    print("\n== no hangs (2 DDP ranks, rank 1 misbehaves, collective timeout 5 s)")
    if installed("weft-ddp"):
        results = run_hang_scenarios(HANG_SCENARIOS)
        results["skip_all_reduce (WEFT_DEBUG_COLLECTIVES=1)"] = finish_hang_scenario(*start_hang_scenario("skip_all_reduce", debug=True))
        for name, r in results.items():
            named = r["names_rank_1"] or "does not match across ranks" in r["output"]
            print(
                f"  {name:45s} exit {r['returncode']}  all {r['ranks_started']} ranks exited after {r['seconds']:5.1f} s"
                f"  (left running: {r['ranks_left_running']})  names rank 1: {'yes' if named else 'NO'}"
            )
    else:
        print("  weft-ddp is not installed: skipped")

    if installed("weft-ddp"):
        lifecycle()
    else:
        print("\n== exiting ranks, orphans, listeners: weft-ddp is not installed, skipped")

    print("\n== bit flips in a single-file checkpoint")
    flips = bit_flips()
    print(f"bytes flipped one at a time: {flips['flipped']}  refused with a CheckpointError: {flips['refused']}  "
          f"loaded unchanged (harmless bytes): {flips['harmless']}  silently wrong: {flips['silent']}  "
          f"other errors: {flips['other errors']}")

    print("\n== bad inputs")
    by_area: dict[str, list[int]] = {}  # area -> [tried, clear]
    tried, clear, skipped, unclear = 0, 0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(CASES):
            if case.needs and not installed(case.needs):
                skipped += 1
                continue
            folder = Path(tmp) / str(i)
            folder.mkdir()
            ok, description = run_case(case, folder)
            tried += 1
            clear += ok
            counts = by_area.setdefault(case.area or "other", [0, 0])
            counts[0] += 1
            counts[1] += ok
            if not ok:
                pending = f" [pending: {PENDING[case.name]}]" if case.name in PENDING else ""
                unclear.append(f"  UNCLEAR ({case.area}) {case.name}: {description[:300]}{pending}")
    share = 100.0 * clear / tried if tried else 0.0
    print(f"cases tried: {tried}  clear weft errors: {clear}  share: {share:.1f} %  (skipped, plugin missing: {skipped})")
    for area, (n, ok) in by_area.items():
        print(f"  {area:12s} tried {n:3d}  clear {ok:3d}  ({100.0 * ok / n:.1f} %)")
    print("\n".join(unclear))

def lifecycle() -> None:
    """Exiting ranks (default timeout), orphans (launcher SIGKILLed) and listening sockets."""
    print("\n== exiting ranks (2 DDP ranks, rank 1 exits mid-training, default 600 s collective timeout)")
    jobs = {(launcher, mode): start_lifecycle_job(launcher, mode) for launcher in LAUNCHERS for mode in ("exit3", "exit0")}
    hangs = 0
    for (launcher, mode), job in jobs.items():
        r = job.finish(limit_s=120)
        after = r["seconds_after_exit"]
        hung = r["timed_out"] or r["ranks_left_running"] or r["returncode"] in (0, None) or after is None or after > 60
        hangs += bool(hung)
        print(f"  {launcher:9s} {mode}: exit {r['returncode']}  job ended {r['seconds_after_exit']} s after the exit "
              f"({r['seconds']} s in all)  left running: {r['ranks_left_running']}")
    print(f"hangs (a process alive 60 s after the exit, or exit status 0): {hangs}")

    print("\n== orphans (the launcher is killed with SIGKILL while both ranks train)")
    jobs = {launcher: start_lifecycle_job(launcher, "train") for launcher in LAUNCHERS}
    orphans = 0
    try:
        ready = {launcher: job.wait_for(r"WEFT-TEST-READY", 2, timeout=120) for launcher, job in jobs.items()}
        for job in jobs.values():
            os.kill(job.proc.pid, signal.SIGKILL)
        for launcher, job in jobs.items():
            gone = job.workers_gone_within(5)
            orphans += gone is None
            shown = "NOT gone after 5 s" if gone is None else f"gone after {gone:.1f} s"
            print(f"  {launcher:9s} ready: {ready[launcher]}  workers {shown}")
    finally:
        for job in jobs.values():
            job.stop()
    print(f"orphans: {orphans}")

    print("\n== listening sockets of a single-node 2-rank job")
    import test_transport_and_collectives as net

    hostname = None
    found = net._network_address()
    if found and net._can_fake_hostname():
        hostname = found[0]  # the host name resolves to the network address, as on cluster nodes
    exposed = 0
    for name, argv in net.NET_COMMANDS.items():
        with tempfile.TemporaryDirectory() as tmp:
            r = net.run_net_job(argv, Path(tmp), hostname=hostname)
        outside = [a for a in r["addresses"] if not net._is_loopback(a)]
        exposed += len(outside)
        print(f"  {name:16s} listening: {len(r['addresses'])}  on non-loopback addresses: {len(outside)} {outside or ''}")
    print(f"listeners on non-loopback addresses: {exposed}" + (f" (host name resolving to {hostname})" if hostname else ""))


def bit_flips() -> dict:
    """Flip each byte of a small checkpoint in turn and load it: refused, harmless, or silently wrong."""
    import torch

    from weft.checkpoint import atomic_torch_save, load_file
    from weft.errors import CheckpointError

    state = {"model": {"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "bias": torch.ones(3)}, "step": 7}
    counts = {"flipped": 0, "refused": 0, "harmless": 0, "silent": 0, "other errors": 0}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.ckpt")
        atomic_torch_save(state, path)
        original = open(path, "rb").read()
        for i in range(len(original)):
            damaged = bytearray(original)
            damaged[i] ^= 0x10
            with open(path, "wb") as f:
                f.write(damaged)
            counts["flipped"] += 1
            try:
                loaded = load_file(path)
            except CheckpointError:
                counts["refused"] += 1
                continue
            except Exception:  # noqa: BLE001 - counted: every failure should be a CheckpointError
                counts["other errors"] += 1
                continue
            same = (
                isinstance(loaded, dict) and loaded.get("step") == 7
                and torch.equal(loaded["model"]["weight"], state["model"]["weight"])
                and torch.equal(loaded["model"]["bias"], state["model"]["bias"])
            )
            counts["harmless" if same else "silent"] += 1
    return counts


if __name__ == "__main__":
    main()
