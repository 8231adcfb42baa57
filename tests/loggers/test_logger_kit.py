"""``pytest --weft-logger=NAME`` passes the shipped loggers and fails broken ones, naming the hook and the plugin."""

from __future__ import annotations

import re

import pytest

from logger_helpers import SCRIPTS, install_dist_info, run_logger_kit, with_site

BROKEN = {
    "good": "broken_loggers:GoodLogger",
    "broken_missing": "broken_loggers:MissingHookLogger",
    "broken_signature": "broken_loggers:WrongSignatureLogger",
    "broken_raises": "broken_loggers:RaisingLogger",
    "broken_step": "broken_loggers:DroppingLogger",
    "broken_hparams": "broken_loggers:LostHyperparamsLogger",
    "broken_log_dir": "broken_loggers:NoLogDirLogger",
    "broken_overwrites": "broken_loggers:OverwritingLogger",
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    return install_dist_info(
        tmp_path_factory.mktemp("site"), "weft-broken-loggers", "0.3.1", {"weft.loggers": BROKEN},
        requires=["weft>=0.1,<0.2"], modules=[SCRIPTS / "broken_loggers.py"],
    )


@pytest.fixture(scope="module")
def miniflow_site(tmp_path_factory):
    return install_dist_info(
        tmp_path_factory.mktemp("site"), "weft-miniflow", "1.0.0", {"weft.loggers": {"miniflow": "miniflow_logger:MiniFlowLogger"}},
        requires=["weft>=0.1,<0.2"], modules=[SCRIPTS / "miniflow_logger.py"],
    )


def _passed(proc, count: int) -> None:
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert re.search(rf"\b{count} passed\b", proc.stdout), proc.stdout[-3000:]


@pytest.mark.timeout(180)
def test_kit_passes_tensorboard(tmp_path) -> None:
    proc = run_logger_kit("tensorboard", cwd=tmp_path)
    _passed(proc, 10)  # tensorboard reads back everything: nothing skipped


@pytest.mark.timeout(180)
def test_kit_passes_csv(tmp_path) -> None:
    proc = run_logger_kit("csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "failed" not in proc.stdout and "error" not in proc.stdout.lower(), proc.stdout[-3000:]


@pytest.mark.timeout(180)
def test_kit_passes_a_third_party_logger(miniflow_site, tmp_path) -> None:
    proc = run_logger_kit("miniflow", env=with_site(miniflow_site), cwd=tmp_path)
    _passed(proc, 10)


@pytest.mark.timeout(180)
def test_kit_passes_a_logger_implementing_the_hooks_directly(broken_site, tmp_path) -> None:
    # The control for the broken ones below: the same code, unbroken, passes.
    _passed(run_logger_kit("good", env=with_site(broken_site), cwd=tmp_path), 10)


CASES = [
    # (logger, hook or property the failure must name, words that must accompany it)
    ("broken_missing", "weft_logger_finalize", "does not implement the required hook"),
    ("broken_signature", "weft_logger_log_metrics", "stride"),
    ("broken_raises", "weft_logger_log_metrics", "RuntimeError: log_metrics exploded on purpose"),
    ("broken_step", "weft_logger_log_metrics", "expected (step, value) pairs"),
    ("broken_hparams", "weft_logger_log_hyperparams", "hyperparameter 'lr' is missing"),
    ("broken_log_dir", "'log_dir'", "AttributeError: no log_dir here"),
    ("broken_overwrites", "first run's folder", "choose the next free version"),
]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("logger,names,detail", CASES, ids=[c[0] for c in CASES])
def test_kit_fails_broken_loggers_naming_the_hook(logger, names, detail, broken_site, tmp_path) -> None:
    proc = run_logger_kit(logger, env=with_site(broken_site), cwd=tmp_path)
    assert proc.returncode == 1, f"the kit should fail for {logger}:\n{proc.stdout[-4000:]}"
    plugin = f"logger '{logger}' (weft-broken-loggers 0.3.1, broken_loggers:"
    naming = [line for line in proc.stdout.splitlines() if names in line and plugin in line]
    assert naming, f"no line names both {names} and {plugin}:\n{proc.stdout[-5000:]}"
    assert detail in proc.stdout, proc.stdout[-5000:]


@pytest.mark.timeout(60)
def test_kit_is_off_without_the_option(tmp_path) -> None:
    # An ordinary pytest run in a plugin author's project collects no logger suite.
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    pass\n")
    from logger_helpers import clean_env, run
    import sys

    proc = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"], timeout=50, env=clean_env(), cwd=tmp_path)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]
