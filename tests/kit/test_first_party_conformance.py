"""The first-party strategies pass the conformance kit, run exactly as a plugin author runs it,
skipping exactly the checks their StrategyCapabilities say do not apply."""

from __future__ import annotations

import pytest

from kit_helpers import assert_kit_passed, expected_skips, run_kit

# (strategy, devices): single_device is a one-process strategy.
CASES = [("single_device", "1"), ("ddp", "2"), ("fsdp", "2")]


def _installed(strategy: str) -> bool:
    from weft import registry

    return strategy in registry.names("strategies")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy,devices", CASES, ids=[c[0] for c in CASES])
def test_strategy_passes_the_kit(strategy: str, devices: str, tmp_path) -> None:
    if not _installed(strategy):
        pytest.skip(f"strategy {strategy!r} is not installed (pip install -c constraints.txt -e plugins/{strategy})")
    proc = run_kit(strategy, f"--weft-devices={devices}", "-vv", cwd=tmp_path)
    assert_kit_passed(proc, expected_skips(strategy, int(devices)))
