"""rank_zero_only and the rank_zero_* messages: one process with each rank, and two real processes."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from conftest import run_python
from weft.utilities import rank_zero as rz
from weft.utilities import rank_zero_debug, rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn

SCRIPT = __import__("pathlib").Path(__file__).parent / "scripts" / "rank_zero_procs.py"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@pytest.fixture
def rank(monkeypatch):
    """Set this process's rank through the environment; the explicit value is restored after."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    saved = rank_zero_only._rank
    rank_zero_only.rank = None

    def set_rank(value, variable="RANK"):
        monkeypatch.setenv(variable, str(value))

    yield set_rank
    rank_zero_only._rank = saved


def test_rank_is_read_from_the_launchers_variables_in_lightnings_order(rank, monkeypatch):
    assert rank_zero_only.rank == 0  # nothing set: rank 0, as Lightning's `_get_rank() or 0`
    rank(3, "SLURM_PROCID")
    assert rank_zero_only.rank == 3
    rank(2, "LOCAL_RANK")  # LOCAL_RANK wins over SLURM_PROCID (SLURM sets it even when not launching)
    assert rank_zero_only.rank == 2
    rank(1, "RANK")
    assert rank_zero_only.rank == 1


def test_the_same_rank_as_lightnings_get_rank(rank):
    from lightning.fabric.utilities.rank_zero import _get_rank

    for variable, value in (("JSM_NAMESPACE_RANK", 5), ("SLURM_PROCID", 4), ("LOCAL_RANK", 1)):
        rank(value, variable)
        assert rank_zero_only.rank == _get_rank()


def test_an_assigned_rank_wins_and_none_goes_back_to_the_environment(rank):
    rank(1)
    rank_zero_only.rank = 0
    assert rank_zero_only.rank == 0
    rank_zero_only.rank = None
    assert rank_zero_only.rank == 1


@pytest.mark.parametrize("bad", [-1, "0", 1.0, True])
def test_a_bad_rank_is_refused_naming_it(rank, bad):
    with pytest.raises(ValueError, match=r"rank_zero_only.rank = " + repr(bad).replace(".", r"\.")):
        rank_zero_only.rank = bad


def test_a_non_integer_variable_is_named(rank, monkeypatch):
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match="RANK='zero'"):
        rank_zero_only.rank


def test_decorated_function_runs_on_rank_zero_only(rank):
    calls = []

    @rank_zero_only
    def f(x, y=0):
        calls.append((x, y))
        return x + y

    assert f.__name__ == "f"
    assert f(1, y=2) == 3
    rank(1)
    assert f(5) is None
    assert rank_zero_only(lambda: "ran", default="skipped")() == "skipped"
    assert calls == [(1, 2)]


def test_messages_on_rank_zero_and_silence_elsewhere(rank, caplog):
    caplog.set_level(logging.DEBUG, logger=rz.log.name)
    with pytest.warns(UserWarning, match="careful") as record:
        rank_zero_warn("careful")
    assert record[0].filename == __file__  # stacklevel points at the caller, as Lightning's does
    with pytest.warns(DeprecationWarning, match="old"):
        rank_zero_deprecation("old")
    rank_zero_info("info %s", "message")
    rank_zero_debug("debug message")
    assert [r.getMessage() for r in caplog.records] == ["info message", "debug message"]
    assert all(r.pathname == __file__ for r in caplog.records)

    caplog.clear()
    rank(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rank_zero_warn("careful")
        rank_zero_deprecation("old")
    rank_zero_info("info")
    rank_zero_debug("debug")
    assert caplog.records == []


def test_warning_points_where_lightnings_does(rank):
    from lightning.fabric.utilities.rank_zero import rank_zero_warn as lightning_warn

    def caller(warn, stacklevel):
        warn("here", stacklevel=stacklevel)

    def where(warn, stacklevel):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            caller(warn, stacklevel)  # stacklevel 5 points here, for both
        return caught[0].filename, caught[0].lineno

    for stacklevel in (4, 5):
        ours, theirs = (where(warn, stacklevel) for warn in (rank_zero_warn, lightning_warn))
        assert ours == theirs


def test_importing_rank_zero_does_not_import_torch(python):
    code = "import sys, weft.utilities as u\nu.rank_zero_only, u.rank_zero_warn, u.AttributeDict\nprint('torch' in sys.modules)"
    assert python(["-c", code]).stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("strategy", ["ddp", "ddp_fork"])
def test_two_real_processes(tmp_path, strategy):
    run_python([SCRIPT, strategy, tmp_path], timeout=140)
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    zero, one = records
    assert zero["rank_zero_only.rank"] == 0 and zero["decorated"] == "ran" and zero["default"] == "ran"
    assert zero["warnings"] == ["a warning from rank zero"]
    # Under ddp the script runs anew in each process, whose variables give its rank from the start;
    # under ddp_fork the child inherits the module from a parent that had read rank 0.
    assert one["before_launch"] == (1 if strategy == "ddp" else 0)
    assert one["global_rank"] == 1 and one["rank_zero_only.rank"] == 1
    assert one["decorated"] is None and one["default"] == "skipped" and one["warnings"] == []
