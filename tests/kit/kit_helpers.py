"""Helpers for the conformance-kit tests: installing plugins as real metadata, running the kit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
EXAMPLE = HERE.parent.parent / "examples" / "plugins" / "weft-compressed-ddp"


def install_dist_info(folder: Path, name: str, version: str, entry_points: dict[str, dict[str, str]], requires: list[str] = (), modules: list[Path] = ()) -> Path:
    """Make ``folder`` look like site-packages holding one distribution: ``<name>-<version>.dist-info``
    with METADATA and entry_points.txt, plus the given module files. Put ``folder`` on sys.path
    (or PYTHONPATH) and the registry finds it through importlib.metadata, like any installed plugin."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    groups = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in names.items()) + "\n" for group, names in entry_points.items())
    (info / "entry_points.txt").write_text(groups)
    for module in modules:
        shutil.copy(module, folder / module.name)
    return folder


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_", "TORCHELASTIC", "WEFT_CLI_", "WEFT_PLUGINS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(command: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command in a new session; on timeout kill it and everything it started, then fail."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or clean_env(), cwd=cwd, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(command)}\n{out[-6000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, "")


def run_kit(strategy: str, *extra: str, timeout: float = 240, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``pytest --weft-strategy=STRATEGY`` as a user runs it: from a folder of their own, no test paths."""
    command = [sys.executable, "-m", "pytest", f"--weft-strategy={strategy}", "-q", "-p", "no:cacheprovider", "-rfE", *extra]
    return run(command, timeout=timeout, env=env, cwd=cwd)


def outcomes(output: str) -> dict[str, str]:
    """``{test name: PASSED/SKIPPED/FAILED/ERROR}`` from a kit run with ``-vv``."""
    import re

    return {m.group(1): m.group(2) for m in re.finditer(r"::(test_\w+) (PASSED|SKIPPED|FAILED|ERROR)", output)}


def expected_skips(strategy: str, devices: int, options: dict | None = None) -> set[str]:
    """The kit checks that do not apply to what ``strategy`` declares (its StrategyCapabilities)."""
    from weft import registry
    from weft.capabilities import strategy_capabilities
    from weft.testing.managers import plugin_manager

    hook = plugin_manager(registry.create("strategies", strategy, options)).hook
    caps = strategy_capabilities(hook)
    skips = set()
    if not hook.weft_strategy_module_init_context.get_hookimpls():
        skips.add("test_init_module_honours_empty_init")  # Fabric's fallback decides, not the strategy
    if caps.gradient_sync == "periodic":
        skips |= {"test_gradients_are_reduced_across_ranks", "test_no_backward_sync_accumulates_then_syncs"}
    else:
        skips.add("test_periodic_sync_makes_parameters_agree")
    if caps.gradient_sync == "never":
        skips.add("test_parameters_agree_across_ranks")
    if devices == 1:
        skips.add("test_barrier_waits_for_every_rank")
    return skips


def assert_kit_passed(proc: subprocess.CompletedProcess, skips: set[str]) -> None:
    """The kit run passed, skipping exactly ``skips`` (with reasons) and running everything else."""
    seen = outcomes(proc.stdout)
    assert proc.returncode == 0 and "FAILED" not in seen.values(), proc.stdout[-8000:]
    assert {t for t, o in seen.items() if o == "SKIPPED"} == skips, proc.stdout[-4000:]
    assert sum(o == "PASSED" for o in seen.values()) >= 18, proc.stdout[-3000:]
