"""Strategy options (``registry.create(kind, name, options)``, ``weft run --strategy-option KEY=VALUE``)
and the per-process hook ``weft_setup_process``.

One real job serves both: ``weft run --devices 2 --strategy ddp --strategy-option ...`` runs a script
whose Fabric has an extra plugin recording ``weft_setup_process``; each rank writes what it saw.
Everything else runs in-process.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest
from conftest import run_python

import weft
from weft import cli, registry
from weft.builtins.single_device import SingleDeviceStrategy
from weft.cli import UsageError
from weft.errors import ConfigurationError
from weft.cli_defaults import CLI_STRATEGY_OPTIONS

HAS_DDP = importlib.util.find_spec("weft_ddp") is not None


class Tunable(SingleDeviceStrategy):
    """A strategy whose factory takes options."""

    name = "tunable"

    def __init__(self, alpha: int = 1, label: str = "plain", ratio: float | None = None) -> None:
        super().__init__()
        if alpha < 0:
            raise ConfigurationError(f"alpha={alpha} must be >= 0")
        self.alpha, self.label, self.ratio = alpha, label, ratio


@pytest.fixture
def tunable():
    weft.register("strategy", "tunable", Tunable)
    yield
    registry.unregister("strategy", "tunable")


# ---------------------------------------------------------------------- registry.create(options)


def test_options_reach_the_factory_as_keyword_arguments(tunable):
    plugin = registry.create("strategies", "tunable", {"alpha": 3, "ratio": 0.5})
    assert (plugin.alpha, plugin.label, plugin.ratio) == (3, "plain", 0.5)
    assert registry.create("strategies", "tunable").alpha == 1  # None / no options: the defaults


def test_unknown_option_names_it_the_plugin_and_the_accepted_parameters(tunable):
    with pytest.raises(ConfigurationError) as info:
        registry.create("strategies", "tunable", {"alpah": 3})
    message = str(info.value)
    assert "'alpah'" in message and "'tunable'" in message and "alpha, label, ratio" in message


def test_a_value_the_factory_refuses_is_a_configuration_error_naming_the_plugin(tunable):
    with pytest.raises(ConfigurationError, match="'tunable' refused the options .*alpha=-1 must be >= 0"):
        registry.create("strategies", "tunable", {"alpha": -1})
    with pytest.raises(ConfigurationError, match="'tunable' refused the options .*TypeError"):
        registry.create("strategies", "tunable", {"alpha": "many"})  # '<' between str and int


@pytest.mark.skipif(not HAS_DDP, reason="weft-ddp not installed")
def test_a_factory_taking_kwargs_checks_names_itself_and_the_error_names_the_plugin():
    assert registry.create("strategies", "ddp", {"timeout": 30}).timeout == 30
    with pytest.raises(ConfigurationError) as info:
        registry.create("strategies", "ddp", {"no_such_option": 1})
    assert "'ddp'" in str(info.value) and "no_such_option" in str(info.value)
    with pytest.raises(ConfigurationError, match="'ddp_spawn'.*takes no option 'timeout'.*Its parameters: none"):
        registry.create("strategies", "ddp_spawn", {"timeout": 30})


# ---------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timeout=30", ("timeout", 30)),
        ("ratio=0.25", ("ratio", 0.25)),
        ("flag=True", ("flag", True)),
        ("flag=false", ("flag", False)),
        ("device=None", ("device", None)),
        ("label=fast", ("label", "fast")),
        ("label='30'", ("label", "30")),  # quoted: the string
        ("path=/tmp/a=b", ("path", "/tmp/a=b")),
        ("empty=", ("empty", "")),
        ("items=[1, 2]", ("items", "[1, 2]")),  # only scalars are converted
    ],
)
def test_option_values_are_read_as_scalars_else_strings(text, expected):
    assert cli.parse_strategy_option(text) == expected


@pytest.mark.parametrize("argv", [["--strategy-option", "novalue"], ["--strategy-option", "not a key=1"],
                                  ["--strategy-option", "a=1", "--strategy-option", "a=2"]])
def test_bad_strategy_option_is_a_usage_error_naming_it(argv):
    parser = cli.build_parser(raise_errors=True)
    with pytest.raises(UsageError) as info:
        parser.parse_args(["run", *argv, "train.py"])
    assert "--strategy-option" in str(info.value)


def test_repeated_options_collect_into_one_dict():
    args = cli.build_parser(raise_errors=True).parse_args(
        ["run", "--strategy-option", "alpha=2", "--strategy_option", "label=x", "train.py", "--alpha", "9"]
    )
    assert args.strategy_options == {"alpha": 2, "label": "x"} and args.script_args == ["--alpha", "9"]


def test_weft_run_refuses_an_unknown_option_before_starting_anything(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('must not run')\n")
    status = cli.main(["run", "--accelerator", "cpu", "--devices", "1", "--strategy", "single_device",
                       "--strategy-option", "nope=1", str(script)])
    err = capsys.readouterr().err
    assert status == 2 and "'nope'" in err and "single_device" in err and "must not run" not in err


def strategy_from_cli(monkeypatch, options, strategy="tunable"):
    monkeypatch.setenv(CLI_STRATEGY_OPTIONS, json.dumps(options))
    return weft.Fabric(accelerator="cpu", strategy=strategy).strategy


def test_cli_options_reach_a_strategy_the_script_names(tunable, monkeypatch):
    assert strategy_from_cli(monkeypatch, {"alpha": 7}).alpha == 7


def test_broken_plumbing_that_drops_cli_options_is_caught(tunable, monkeypatch):
    from weft import fabric as fabric_module

    monkeypatch.setattr(fabric_module, "_cli_strategy_options", lambda strategy: {})  # options ignored
    with pytest.raises(AssertionError):
        assert strategy_from_cli(monkeypatch, {"alpha": 7}).alpha == 7


def test_cli_options_for_a_strategy_object_are_refused(monkeypatch):
    with pytest.raises(ConfigurationError, match="already built"):
        strategy_from_cli(monkeypatch, {"alpha": 7}, strategy=SingleDeviceStrategy())


def test_a_malformed_options_variable_names_itself(monkeypatch):
    monkeypatch.setenv(CLI_STRATEGY_OPTIONS, "alpha=7")
    with pytest.raises(ConfigurationError, match=CLI_STRATEGY_OPTIONS):
        weft.Fabric(accelerator="cpu")


# ---------------------------------------------------------------------- weft_setup_process, in-process


class SetupRecorder:
    """An extra plugin recording each ``weft_setup_process`` call (and what was ready then)."""

    def __init__(self) -> None:
        self.calls = []

    @weft.hookimpl
    def weft_setup_process(self, fabric):
        import torch.distributed as dist

        group_ready = dist.is_available() and dist.is_initialized()
        self.calls.append({"rank": fabric.global_rank, "device": str(fabric.device), "group_ready": group_ready})


def check_setup_ran_once(fabric, recorder):
    fabric.launch()
    fabric.barrier()
    assert recorder.calls == [{"rank": 0, "device": "cpu", "group_ready": False}]


def test_setup_process_runs_once_before_the_strategy_sets_up():
    recorder = SetupRecorder()
    check_setup_ran_once(weft.Fabric(accelerator="cpu", plugins=[recorder]), recorder)


def test_broken_setup_that_never_calls_the_hook_is_caught(monkeypatch):
    recorder = SetupRecorder()
    fabric = weft.Fabric(accelerator="cpu", plugins=[recorder])
    monkeypatch.setattr(fabric.hook, "weft_setup_process", lambda **kwargs: None)  # core not calling it
    with pytest.raises(AssertionError):
        check_setup_ran_once(fabric, recorder)


# ---------------------------------------------------------------------- one real `weft run` job

JOB_SCRIPT = '''
import json, os, sys
import torch.distributed as dist
import weft


class SetupRecorder:
    def __init__(self):
        self.calls = []

    @weft.hookimpl
    def weft_setup_process(self, fabric):
        self.calls.append({"rank": fabric.global_rank, "world_size": fabric.world_size,
                           "device": str(fabric.device), "group_ready": dist.is_initialized()})


recorder = SetupRecorder()
fabric = weft.Fabric(accelerator="cpu", plugins=[recorder])
fabric.launch()
fabric.barrier()
strategy = fabric.strategy
record = {"rank": fabric.global_rank, "strategy": fabric.strategy_name, "timeout": strategy.timeout,
          "init_timeout": strategy.init_timeout, "static_graph": strategy.static_graph, "setup_calls": recorder.calls}
with open(os.path.join(sys.argv[1], f"rank{fabric.global_rank}.json"), "w") as f:
    json.dump(record, f)
'''


def ranks_set_up(records):
    """The ranks whose weft_setup_process ran exactly once, in their own process, before the process group."""
    return sorted(
        r["rank"] for r in records
        if [(c["rank"], c["world_size"], c["group_ready"]) for c in r["setup_calls"]] == [(r["rank"], 2, False)]
    )


@pytest.fixture(scope="module")
def weft_run_job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("options_job")
    script = folder / "train.py"
    script.write_text(textwrap.dedent(JOB_SCRIPT))
    out = folder / "out"
    out.mkdir()
    proc = run_python(
        ["-m", "weft.cli", "run", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
         "--strategy-option", "timeout=45", "--strategy-option", "init_timeout=40.5",
         "--strategy-option", "static_graph=true", script, out],
        timeout=180,
    )
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)], proc


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DDP, reason="weft-ddp not installed")
def test_weft_run_strategy_options_reach_every_rank(weft_run_job):
    records, _ = weft_run_job
    for record in records:
        assert record["strategy"] == "ddp"
        assert (record["timeout"], record["init_timeout"], record["static_graph"]) == (45, 40.5, True)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DDP, reason="weft-ddp not installed")
def test_setup_process_runs_in_every_launched_rank(weft_run_job):
    records, _ = weft_run_job
    assert ranks_set_up(records) == [0, 1]
    assert {c["device"] for r in records for c in r["setup_calls"]} == {"cpu"}


def test_the_rank_check_catches_a_rank_without_setup():
    ok = {"rank": 0, "setup_calls": [{"rank": 0, "world_size": 2, "group_ready": False}]}
    assert ranks_set_up([ok, {"rank": 1, "setup_calls": []}]) == [0]  # the hook did not run on rank 1
    twice = {"rank": 1, "setup_calls": [{"rank": 1, "world_size": 2, "group_ready": False}] * 2}
    assert ranks_set_up([ok, twice]) == [0]
    late = {"rank": 1, "setup_calls": [{"rank": 1, "world_size": 2, "group_ready": True}]}
    assert ranks_set_up([ok, late]) == [0]  # ran after the process group was created
