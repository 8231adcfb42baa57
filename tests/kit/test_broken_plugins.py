"""A plugin that breaks the hook contract makes the kit fail, naming the hook and the plugin."""

from __future__ import annotations

import os
import re

import pytest

from kit_helpers import SCRIPTS, clean_env, install_dist_info, run_kit

ENTRY_POINTS = {
    "broken_missing": "broken_strategies:MissingHookStrategy",
    "broken_signature": "broken_strategies:WrongSignatureStrategy",
    "broken_raises": "broken_strategies:RaisingStrategy",
    "broken_result": "broken_strategies:WrongResultStrategy",
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    return install_dist_info(
        folder, "weft-broken", "0.3.1", {"weft.strategies": ENTRY_POINTS}, requires=["weft>=0.1,<0.2"], modules=[SCRIPTS / "broken_strategies.py"]
    )


CASES = [
    # (strategy, hook the failure must name, words that must accompany it)
    ("broken_missing", "weft_strategy_all_gather", "does not implement the required hook"),
    ("broken_signature", "weft_strategy_all_reduce", "op"),
    ("broken_raises", "weft_strategy_all_reduce", "RuntimeError: all_reduce exploded on purpose"),
    ("broken_result", "weft_strategy_all_gather", "expected [[0.0, 0.0]]"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy,hook,detail", CASES, ids=[c[0] for c in CASES])
def test_kit_names_the_hook_and_the_plugin(strategy, hook, detail, broken_site, tmp_path) -> None:
    env = clean_env(PYTHONPATH=os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")]))
    # -x: stop at the first failing check, the one a plugin author reads first.
    proc = run_kit(strategy, "--weft-devices=1", "-x", env=env, cwd=tmp_path, timeout=100)
    assert proc.returncode == 1, f"the kit should fail for {strategy}:\n{proc.stdout[-4000:]}"
    plugin = f"strategy '{strategy}' (weft-broken 0.3.1, broken_strategies:"
    naming = [line for line in proc.stdout.splitlines() if hook in line and plugin in line]
    assert naming, f"no line names both {hook} and {plugin}:\n{proc.stdout[-5000:]}"
    assert detail in proc.stdout, proc.stdout[-5000:]
    assert re.search(r"1 failed", proc.stdout), proc.stdout[-2000:]
