"""Run a scenario under Lightning Fabric and under weft, and compare what each rank observed.

Numbers must agree to ``rel=1e-6`` (both runs do the same float operations, so most agree
exactly). An exception observation agrees when weft's error is an instance of the builtin class
Lightning raised (weft's message may differ). Keys must be the same on both sides.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Lightning Fabric is a test-only dependency (scripts/setup.sh installs it); without it the
# differential tests skip. (A module, not a conftest.py: the suite imports the top conftest by name.)
pytest.importorskip("lightning.fabric", reason="lightning is not installed (scripts/setup.sh installs it for tests)")

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
_DROP = ("WEFT_", "PL_", "LT_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_", "TORCHELASTIC", "NODE_RANK")


class Mismatch(AssertionError):
    """The two frameworks observed different things."""


def run(scenario: str, framework: str, out: Path, *, ranks: int, breakage: str | None = None, timeout: float = 240,
        env: dict[str, str] | None = None, args: list[str] | None = None) -> dict[int, dict]:
    """Run one scenario under one framework; return ``{rank: observations}``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
    full_env.update({"PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    if breakage:
        full_env["COMPAT_BREAK"] = breakage
    full_env.update(env or {})
    command = [sys.executable, str(SCENARIOS / f"{scenario}.py"), framework, str(out), *(args or [])]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=out)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{scenario} under {framework} timed out after {timeout}s\n{exc.stdout}\n{exc.stderr}") from None
    if proc.returncode != 0:
        raise AssertionError(f"{scenario} under {framework} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-8000:]}")
    found = {int(p.name.split(".rank")[1].split(".")[0]): json.loads(p.read_text()) for p in out.glob(f"{framework}.rank*.json")}
    if sorted(found) != list(range(ranks)):
        raise AssertionError(f"{scenario} under {framework}: expected observations of ranks 0..{ranks - 1}, got {sorted(found)}\n{proc.stderr[-4000:]}")
    return found


def differences(lightning, weft, where: str = "") -> list[str]:
    """Where ``weft``'s observations differ from ``lightning``'s (empty when they agree)."""
    if isinstance(lightning, dict) and "raised" in lightning and isinstance(weft, dict) and "raised" in weft:
        expected, got = lightning["raised"], weft["raised"]
        if expected is None or got is None:
            return [] if expected == got else [f"{where}: Lightning raised {expected}, weft raised {got} ({weft.get('message', '')})"]
        return [] if expected[0] in got else [f"{where}: Lightning raised {expected[0]}, weft's error is {got} ({weft.get('message', '')})"]
    if isinstance(lightning, dict) and isinstance(weft, dict):
        out = []
        for key in sorted(set(lightning) | set(weft)):
            if key not in weft:
                out.append(f"{where}/{key}: missing under weft")
            elif key not in lightning:
                out.append(f"{where}/{key}: missing under Lightning")
            else:
                out += differences(lightning[key], weft[key], f"{where}/{key}")
        return out
    if isinstance(lightning, list) and isinstance(weft, list):
        if len(lightning) != len(weft):
            return [f"{where}: length {len(lightning)} under Lightning, {len(weft)} under weft"]
        out = []
        for i, (a, b) in enumerate(zip(lightning, weft)):
            out += differences(a, b, f"{where}[{i}]")
            if len(out) > 20:
                break
        return out
    if isinstance(lightning, (int, float)) and isinstance(weft, (int, float)) and not isinstance(lightning, bool) and not isinstance(weft, bool):
        if math.isclose(lightning, weft, rel_tol=1e-6, abs_tol=1e-9):
            return []
    elif lightning == weft and type(lightning) is type(weft):
        return []
    return [f"{where}: Lightning {lightning!r:.200}, weft {weft!r:.200}"]


_LIGHTNING_RUNS: dict[str, dict[int, dict]] = {}


def lightning_run(scenario: str, out: Path, **kwargs) -> dict[int, dict]:
    """Lightning's observations of a scenario, run once per test session: they depend on neither
    weft nor the breakage weft runs with, and a Lightning run costs several seconds."""
    key = f"{scenario} {sorted(kwargs.items())!r}"
    if key not in _LIGHTNING_RUNS:
        _LIGHTNING_RUNS[key] = run(scenario, "lightning", out, **kwargs)
    return copy.deepcopy(_LIGHTNING_RUNS[key])


def assert_same(scenario: str, lightning: dict[int, dict], weft: dict[int, dict]) -> None:
    """Raise :class:`Mismatch` listing every difference between the two runs' observations."""
    found = []
    for rank in sorted(lightning):
        found += differences(lightning[rank], weft.get(rank, {}), f"rank{rank}")
    if found:
        raise Mismatch(f"{scenario}: weft differs from Lightning Fabric:\n  " + "\n  ".join(found[:40]))


def compare(scenario: str, tmp_path: Path, *, ranks: int = 1, breakage: str | None = None, **kwargs) -> dict[int, dict]:
    """Run ``scenario`` under both frameworks; raise :class:`Mismatch` listing every difference.

    Returns weft's observations (for extra checks of weft-only behaviour)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    lightning = lightning_run(scenario, tmp_path, ranks=ranks, **kwargs)
    weft = run(scenario, "weft", tmp_path, ranks=ranks, breakage=breakage, **kwargs)
    assert_same(scenario, lightning, weft)
    return weft


def expect_mismatch(check, scenario: str, breakage: str, *args, **kwargs) -> str:
    """Show a comparison can fail: ``check(scenario, *args, breakage=breakage, **kwargs)`` must raise
    :class:`Mismatch` with weft deliberately broken. Returns the mismatch's message."""
    try:
        check(scenario, *args, breakage=breakage, **kwargs)
    except Mismatch as exc:
        return str(exc)
    raise AssertionError(f"{scenario}: the comparison passed with weft deliberately broken ({breakage}); it checks nothing")


def broken_compare(scenario: str, tmp_path: Path, breakage: str, **kwargs) -> str:
    """:func:`compare` with ``breakage`` applied to weft: it must report a mismatch."""
    return expect_mismatch(compare, scenario, breakage, tmp_path, **kwargs)
