"""A misbehaving rank never hangs the job: every process exits non-zero within 60 s, naming the rank."""

from __future__ import annotations

import re

import pytest

from reliability_tools import HANG_SCENARIOS, finish_hang_scenario, run_hang_scenarios, start_hang_scenario
from weft import registry

pytestmark = pytest.mark.skipif("ddp" not in registry.names("strategies"), reason="weft-ddp is not installed")


@pytest.fixture(scope="module")
def outcomes():
    return run_hang_scenarios(HANG_SCENARIOS, at_once=2)


def _details(r: dict) -> str:
    return f"exit {r['returncode']} after {r['seconds']}s\n{r['output'][-3000:]}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", HANG_SCENARIOS)
def test_every_process_exits_nonzero_within_60s(outcomes, scenario):
    r = outcomes[scenario]
    assert not r["timed_out"] and r["returncode"] not in (0, None), _details(r)
    assert r["ranks_started"] == 2 and r["ranks_left_running"] == 0, _details(r)
    assert r["seconds"] <= 60, _details(r)
    assert "finished scenario" not in r["output"], _details(r)


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "scenario",
    [
        "skip_barrier",
        "skip_all_reduce",
        "raise",
        "sigkill",
    ],
)
def test_the_failing_rank_is_named(outcomes, scenario):
    assert outcomes[scenario]["names_rank_1"], _details(outcomes[scenario])


@pytest.mark.timeout(120)
def test_debug_mode_lists_each_ranks_call_instead_of_waiting():
    r = finish_hang_scenario(*start_hang_scenario("skip_all_reduce", debug=True))
    assert r["returncode"] not in (0, None) and r["ranks_left_running"] == 0, _details(r)
    assert "does not match across ranks" in r["output"], _details(r)
    assert re.search(r"rank 0: all_reduce", r["output"]) and re.search(r"rank 1: barrier", r["output"]), _details(r)
