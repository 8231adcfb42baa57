"""The strategy kit runs the checks that apply to what a strategy declares, and catches
strategies that run to the end without an error but break what they declare.

Three installed sample strategies (real *.dist-info metadata on PYTHONPATH): a Local SGD
written from the public plugin API (it passes), a Local SGD with six independent defects
(one 2-process job; each defect must fail its own check, naming the hook and the plugin;
it declares launches_processes=False, so the kit starts that job with `weft run`),
and two single-device strategies: one changes the module's dtype, one is 0.1 % off, which
the old default tolerance (5 %) let pass.
"""

from __future__ import annotations

import os
import re

import pytest

from kit_helpers import SCRIPTS, assert_kit_passed, clean_env, expected_skips, install_dist_info, outcomes, run_kit

DIST = "weft-kit-samples"
ENTRY_POINTS = {
    "local_sgd": "local_sgd:LocalSGDStrategy",
    "broken_many": "broken_capabilities:ManyDefectsStrategy",
    "broken_dtype": "broken_capabilities:WrongDtypeStrategy",
    "broken_slightly_off": "broken_capabilities:SlightlyOffStrategy",
}


@pytest.fixture(scope="module")
def samples_env(tmp_path_factory) -> dict[str, str]:
    site = install_dist_info(
        tmp_path_factory.mktemp("site"), DIST, "0.3.0", {"weft.strategies": ENTRY_POINTS},
        modules=[SCRIPTS / "local_sgd.py", SCRIPTS / "broken_capabilities.py"],
    )
    return clean_env(PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def _plugin(strategy: str) -> str:
    return f"strategy '{strategy}' ({DIST} 0.3.0, {ENTRY_POINTS[strategy]}"


def _failure_lines(output: str, test: str) -> str:
    """The assertion lines printed for ``test`` (pytest's ``E`` lines under its header)."""
    section = output.split(f"_ {test} _", 1)[-1].split("\n____", 1)[0] if f"_ {test} _" in output else ""
    return "\n".join(line for line in section.splitlines() if line.startswith("E "))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_local_sgd_passes_with_the_periodic_checks(samples_env, tmp_path) -> None:
    proc = run_kit("local_sgd", "--weft-strategy-option", "sync_every=2", "-vv", "-rfEs", env=samples_env, cwd=tmp_path, timeout=280)
    assert_kit_passed(proc, {"test_gradients_are_reduced_across_ranks", "test_no_backward_sync_accumulates_then_syncs"})
    assert outcomes(proc.stdout)["test_periodic_sync_makes_parameters_agree"] == "PASSED"
    assert "gradient_sync='periodic': per-step gradient averaging does not apply" in proc.stdout, proc.stdout[-3000:]


# (kit check, hook its message must name, words of the message)
DEFECTS = [
    ("test_periodic_sync_makes_parameters_agree", "weft_strategy_optimizer_step", "after 2 optimizer steps on different batches the parameters of rank 1 differ"),
    ("test_barrier_waits_for_every_rank", "weft_strategy_barrier", "before rank 1 (which arrived 1.5s late) had reached it"),
    ("test_clip_gradients_by_value", "weft_strategy_clip_gradients_value", "every value must be clamped"),
    ("test_clip_gradients_by_norm", "weft_strategy_clip_gradients_norm", "must be scaled down to max_norm, not only measured"),
    ("test_data_is_sharded_as_declared", "weft_strategy_distributed_sampler_kwargs", "declares shards_data=True"),
    ("test_init_module_honours_empty_init", "weft_strategy_module_init_context", "are the normal seeded initialisation"),
]


@pytest.fixture(scope="module")
def many_defects(samples_env, tmp_path_factory) -> str:
    # One train job for all six defects (no checkpoint reload needed).
    proc = run_kit("broken_many", "-vv", "-k", "not checkpoint", env=samples_env, cwd=tmp_path_factory.mktemp("many"), timeout=280)
    assert proc.returncode == 1, proc.stdout[-6000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("check,hook,words", DEFECTS, ids=[d[1].removeprefix("weft_strategy_") for d in DEFECTS])
def test_kit_catches_a_broken_declared_behaviour(check, hook, words, many_defects) -> None:
    assert outcomes(many_defects).get(check) == "FAILED", many_defects[-6000:]
    message = _failure_lines(many_defects, check)
    assert f"hook {hook} of {_plugin('broken_many')}" in message, message or many_defects[-6000:]
    assert words in message, message


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_many_defects_break_nothing_else(many_defects) -> None:
    """The defects are independent: every other check still passes, so each failure above is its own.
    Its launch hook starts nothing, so every rank running proves the kit started the job with `weft run`."""
    seen = outcomes(many_defects)
    assert seen.get("test_launch_starts_every_rank") == "PASSED", many_defects[-4000:]
    failed = {t for t, o in seen.items() if o == "FAILED"}
    # test_parameters_agree_across_ranks fails too: without averaging the replicas drift apart.
    assert failed == {d[0] for d in DEFECTS} | {"test_parameters_agree_across_ranks"}, many_defects[-4000:]
    assert {t for t, o in seen.items() if o == "SKIPPED"} == {"test_gradients_are_reduced_across_ranks", "test_no_backward_sync_accumulates_then_syncs"}


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_kit_catches_a_module_in_the_wrong_dtype(samples_env, tmp_path) -> None:
    proc = run_kit("broken_dtype", "--weft-devices=1", "-x", "-k", "device", env=samples_env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 1, proc.stdout[-4000:]
    message = _failure_lines(proc.stdout, "test_setup_places_module_and_batches_on_the_device")
    assert f"hook weft_strategy_setup_module of {_plugin('broken_dtype')}" in message, proc.stdout[-4000:]
    assert "are ['torch.float64']; precision '32-true' stores parameters in torch.float32" in message, message


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_default_tolerance_catches_gradients_slightly_off(samples_env, tmp_path) -> None:
    proc = run_kit("broken_slightly_off", "--weft-devices=1", "-x", "-k", "gradients_are_reduced", env=samples_env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 1, proc.stdout[-4000:]
    message = _failure_lines(proc.stdout, "test_gradients_are_reduced_across_ranks")
    assert f"hook weft_strategy_backward of {_plugin('broken_slightly_off')}" in message, proc.stdout[-4000:]
    found = re.search(r"by ([0-9.e-]+) \(relative; allowed ([0-9.e-]+), --weft-rtol\)", message)
    assert found, message
    error, allowed = float(found.group(1)), float(found.group(2))
    assert allowed == 1e-4 and 1e-4 < error < 0.05, (error, allowed)  # the old default, 0.05, passed it


def test_options_and_tolerance_parsing() -> None:
    from weft.testing.conformance import RTOL_FULL_PRECISION, RTOL_LOW_PRECISION, default_rtol, parse_options

    # Read as `weft run --strategy-option` reads them.
    assert parse_options(["sync_every=2", "ratio=0.5", "flag=True", "off=false", "none=None", "name=fast", "text='2'"]) == {
        "sync_every": 2, "ratio": 0.5, "flag": True, "off": False, "none": None, "name": "fast", "text": "2",
    }
    with pytest.raises(pytest.UsageError, match="is not KEY=VALUE"):
        parse_options(["sync_every"])
    with pytest.raises(pytest.UsageError, match="given twice"):
        parse_options(["sync_every=2", "sync_every=3"])
    assert default_rtol("32-true") == RTOL_FULL_PRECISION == 1e-4
    assert default_rtol("bf16-mixed") == RTOL_LOW_PRECISION


def test_expected_skips_follow_the_capabilities(samples_env, monkeypatch) -> None:
    """What the first-party kit tests expect to be skipped is read from each strategy's record."""
    monkeypatch.syspath_prepend(samples_env["PYTHONPATH"].split(os.pathsep)[0])
    assert expected_skips("local_sgd", 2, {"sync_every": 2}) == {"test_gradients_are_reduced_across_ranks", "test_no_backward_sync_accumulates_then_syncs"}
    assert expected_skips("broken_slightly_off", 1) >= {"test_barrier_waits_for_every_rank"}
