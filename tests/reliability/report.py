"""Print the reliability figures: kill-during-save trials and corrupt checkpoints, hang scenarios
and the seconds until every rank exited, bad inputs tried and how many gave clear errors.

Run: ``python tests/reliability/report.py`` (about a minute on two cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bad_inputs import CASES, PENDING, installed, run_case  # noqa: E402
from reliability_tools import HANG_SCENARIOS, finish_hang_scenario, run_hang_scenarios, start_hang_scenario  # noqa: E402


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

if __name__ == "__main__":
    main()
