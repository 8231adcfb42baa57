"""A plugin declaring a core range that excludes this weft is reported, from real metadata."""

from __future__ import annotations

import os
import sys

import pytest

from kit_helpers import SCRIPTS, clean_env, install_dist_info, run, run_kit


@pytest.fixture
def future_plugin(tmp_path):
    # A distribution written for weft 0.2: installed metadata with an entry point and Requires-Dist.
    return install_dist_info(
        tmp_path / "site", "weft-future", "2.0.0",
        {"weft.strategies": {"future_strategy": "broken_strategies:RaisingStrategy"}},
        requires=["weft>=0.2,<0.3", "torch>=2.4"], modules=[SCRIPTS / "broken_strategies.py"],
    )


def test_selection_reports_the_mismatch(future_plugin, monkeypatch) -> None:
    from weft import ConfigurationError, Fabric

    monkeypatch.syspath_prepend(str(future_plugin))
    with pytest.raises(ConfigurationError, match=r"weft-future 2\.0\.0 supports weft>=0\.2,<0\.3, but weft 0\.1\.0 is installed"):
        Fabric(strategy="future_strategy", accelerator="cpu", devices=1)


def test_weft_plugins_reports_the_mismatch(future_plugin) -> None:
    env = clean_env(PYTHONPATH=os.pathsep.join([str(future_plugin), os.environ.get("PYTHONPATH", "")]))
    proc = run([sys.executable, "-m", "weft.cli", "plugins"], timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout
    line = next((l for l in proc.stdout.splitlines() if "future_strategy" in l), "")
    assert "weft-future" in line and "2.0.0" in line and "incompatible" in line, proc.stdout
    assert "supports weft>=0.2,<0.3" in line, line


@pytest.mark.timeout(60)
def test_kit_reports_the_mismatch(future_plugin, tmp_path) -> None:
    env = clean_env(PYTHONPATH=os.pathsep.join([str(future_plugin), os.environ.get("PYTHONPATH", "")]))
    proc = run_kit("future_strategy", "--weft-devices=1", "-x", env=env, cwd=tmp_path, timeout=50)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "test_strategy_is_installed_and_compatible" in proc.stdout
    assert "weft-future 2.0.0 supports weft>=0.2,<0.3" in proc.stdout, proc.stdout[-3000:]
