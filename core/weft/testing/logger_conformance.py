"""The logger conformance suite, collected by ``pytest --weft-logger=NAME``.

Loggers run on global rank 0 only, so everything is checked in the pytest process: the
plugin loads, its hooks match the specifications, the required hooks exist, the
Lightning-style properties answer, each hook can be called the way Fabric calls it, a
second run does not write over the first, and ``Fabric(loggers=NAME)`` reaches it.

Whether what a logger wrote is *right* can only be checked where the logger can read it
back. A logger says how by offering ``read_metrics()`` (``{name: [(step, value), ...]}``)
and ``read_hyperparams()`` (``{name: value}``); without them those checks are skipped,
saying so. Every test runs in a fresh working folder: the factory takes no argument, so a
logger's default location is relative to it.
"""

from __future__ import annotations

import math
import os
import traceback
from typing import Any

import pytest

#: What the kit logs. Values are exact in 32-bit floats, which many formats store.
HYPERPARAMS = {"lr": 0.5, "layers": 3, "optimizer": "sgd"}
METRICS = [(0, {"kit/loss": 2.0, "kit/acc": 0.25}), (1, {"kit/loss": 1.5, "kit/acc": 0.5}), (2, {"kit/loss": 1.25, "kit/acc": 0.75})]
PROPERTIES = {"name": (str,), "version": (int, str), "log_dir": (str, os.PathLike, type(None))}


class LoggerKit:
    """The logger under test and the words to name it in failures."""

    def __init__(self, config: pytest.Config) -> None:
        self.name: str = config.getoption("weft_logger")
        self._described: str | None = None

    @property
    def plugin(self) -> str:
        """e.g. ``logger 'tensorboard' (weft-loggers 0.1.0, weft_loggers.tensorboard:TensorBoardLogger)``."""
        if self._described is None:
            from weft.testing.attribution import describe_plugin

            self._described = describe_plugin(None, "logger", self.name)
        return self._described

    def hook(self, name: str) -> str:
        return f"hook {name} of {self.plugin}"

    def create(self) -> Any:
        from weft import registry

        return registry.create("loggers", self.name)

    def call(self, logger: Any, hook: str, **arguments: Any) -> Any:
        """Call one hook of ``logger`` the way Fabric does (by name, through pluggy), failing with its name."""
        from weft.testing.managers import PluginContractError, plugin_manager

        try:
            manager = plugin_manager(logger)
        except PluginContractError as exc:  # a contract failure, not this hook's: say which hook is at fault
            pytest.fail(f"{self.plugin}: {exc.reason}", pytrace=False)
        try:
            return getattr(manager.hook, hook)(**arguments)
        except Exception as exc:  # noqa: BLE001 - reported with the hook and the plugin
            details = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
            pytest.fail(
                f"{self.hook(hook)} raised {type(exc).__name__}: {exc} (called with {details})\n{traceback.format_exc()}",
                pytrace=False,
            )

    def log_run(self, logger: Any) -> None:
        """What a short training run logs, then the end of the run."""
        self.call(logger, "weft_logger_log_hyperparams", params=dict(HYPERPARAMS))
        for step, metrics in METRICS:
            self.call(logger, "weft_logger_log_metrics", metrics=dict(metrics), step=step)
        self.call(logger, "weft_logger_save")
        self.call(logger, "weft_logger_finalize", status="success")


@pytest.fixture(scope="session")
def logger_kit(request: pytest.FixtureRequest) -> LoggerKit:
    if not request.config.getoption("weft_logger", default=None):
        pytest.skip("the weft logger suite runs with --weft-logger=NAME")
    return LoggerKit(request.config)


@pytest.fixture(autouse=True)
def _fresh_folder(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _same(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and math.isclose(float(a), b, rel_tol=1e-6, abs_tol=1e-9)


def _reader(kit: LoggerKit, logger: Any, method: str) -> Any:
    reader = getattr(logger, method, None)
    if not callable(reader):
        pytest.skip(f"{kit.plugin} offers no {method}(), so what it wrote cannot be checked")
    try:
        return reader()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{kit.plugin}: {method}() raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}", pytrace=False)


def _log_dir(kit: LoggerKit, logger: Any) -> Any:
    try:
        return logger.log_dir
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{kit.plugin}: reading the property 'log_dir' raised {type(exc).__name__}: {exc}", pytrace=False)


# ---------------------------------------------------------------------- static checks


def test_logger_is_installed_and_compatible(logger_kit: LoggerKit) -> None:
    from weft import registry
    from weft.compat import incompatibility

    record = registry.find("loggers", logger_kit.name)
    problem = incompatibility(record)
    assert not problem, f"{logger_kit.plugin}: {problem}"
    logger = logger_kit.create()
    assert any(
        n.startswith("weft_logger_") and hasattr(getattr(type(logger), n), "weft_impl") for n in dir(type(logger))
    ), (
        f"{logger_kit.plugin}: the entry point's factory returned {logger!r}, which implements no weft_logger_* hook "
        "(subclass weft.loggers.Logger, or mark methods with @weft.hookimpl)"
    )
    assert logger_kit.create() is not logger, f"{logger_kit.plugin}: the factory must return a new logger object on each call"


def test_hooks_match_the_specifications(logger_kit: LoggerKit) -> None:
    from weft.testing.managers import PluginContractError, plugin_manager

    problem = None
    try:
        plugin_manager(logger_kit.create())
    except PluginContractError as exc:
        problem = exc.reason
    if problem:
        pytest.fail(f"{logger_kit.plugin}: {problem}", pytrace=False)


def test_required_hooks_are_implemented(logger_kit: LoggerKit) -> None:
    from weft.testing.managers import missing_hooks

    missing = missing_hooks(logger_kit.create(), "logger")
    assert not missing, (
        f"{logger_kit.plugin} does not implement the required hook(s) {', '.join(missing)} "
        "(subclass weft.loggers.Logger to get them all; see weft.hookspecs)"
    )


def test_properties(logger_kit: LoggerKit) -> None:
    logger = logger_kit.create()
    for name, types in PROPERTIES.items():
        try:
            value = getattr(logger, name)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{logger_kit.plugin}: reading the property {name!r} raised {type(exc).__name__}: {exc}", pytrace=False)
        allowed = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        assert isinstance(value, types) and not isinstance(value, bool), (
            f"{logger_kit.plugin}: the property {name!r} is {value!r} ({type(value).__name__}); expected {allowed} "
            "(Lightning's Logger interface, which scripts and tools read)"
        )


# ---------------------------------------------------------------------- calls


def test_hooks_accept_fabrics_calls(logger_kit: LoggerKit) -> None:
    logger = logger_kit.create()
    logger_kit.log_run(logger)


def test_metrics_without_step(logger_kit: LoggerKit) -> None:
    # fabric.log(name, value) without step passes step=None: the logger counts.
    logger = logger_kit.create()
    logger_kit.call(logger, "weft_logger_log_metrics", metrics={"kit/no_step": 1.0}, step=None)
    logger_kit.call(logger, "weft_logger_log_metrics", metrics={"kit/no_step": 2.0}, step=None)
    logger_kit.call(logger, "weft_logger_finalize", status="success")
    read = _reader(logger_kit, logger, "read_metrics")
    points = read.get("kit/no_step")
    assert points and [v for _, v in points] == [1.0, 2.0], f"{logger_kit.hook('weft_logger_log_metrics')}: two values logged with step=None read back as {points!r}"
    steps = [s for s, _ in points]
    assert steps[0] < steps[1], f"{logger_kit.hook('weft_logger_log_metrics')}: two values logged with step=None landed on steps {steps}; each call must advance"


def test_written_metrics_read_back(logger_kit: LoggerKit) -> None:
    logger = logger_kit.create()
    logger_kit.log_run(logger)
    log_dir = _log_dir(logger_kit, logger)
    if log_dir is not None:
        written = [f for _, _, files in os.walk(log_dir) for f in files] if os.path.isdir(log_dir) else []
        assert written, f"{logger_kit.hook('weft_logger_finalize')}: after a run and finalize, nothing was written under log_dir {os.fspath(log_dir)!r}"
    read = _reader(logger_kit, logger, "read_metrics")
    hook = logger_kit.hook("weft_logger_log_metrics")
    for name in METRICS[0][1]:
        want = [(step, metrics[name]) for step, metrics in METRICS]
        got = read.get(name)
        assert got is not None, f"{hook}: metric {name!r} is missing from what read_metrics() returns ({sorted(read)})"
        ok = len(got) == len(want) and all(s == ws and _same(v, wv) for (s, v), (ws, wv) in zip(got, want))
        assert ok, f"{hook}: metric {name!r} read back as {list(got)!r}; expected (step, value) pairs {want!r}"


def test_hyperparameters_read_back(logger_kit: LoggerKit) -> None:
    logger = logger_kit.create()
    logger_kit.log_run(logger)
    read = _reader(logger_kit, logger, "read_hyperparams")
    hook = logger_kit.hook("weft_logger_log_hyperparams")
    for name, value in HYPERPARAMS.items():
        assert name in read, f"{hook}: hyperparameter {name!r} is missing from what read_hyperparams() returns ({sorted(read)})"
        same = read[name] == value if isinstance(value, str) else _same(read[name], value)
        assert same, f"{hook}: hyperparameter {name!r} read back as {read[name]!r}; expected {value!r}"


def test_second_run_does_not_overwrite_the_first(logger_kit: LoggerKit) -> None:
    first = logger_kit.create()
    logger_kit.log_run(first)
    reader = getattr(first, "read_metrics", None)
    before = reader() if callable(reader) else None
    second = logger_kit.create()
    logger_kit.call(second, "weft_logger_log_metrics", metrics={"kit/loss": 9.0}, step=0)
    logger_kit.call(second, "weft_logger_finalize", status="success")
    first_dir, second_dir = _log_dir(logger_kit, first), _log_dir(logger_kit, second)
    if first_dir is None:
        pytest.skip(f"{logger_kit.plugin} has no log_dir; runs are kept apart elsewhere")
    assert os.fspath(second_dir) != os.fspath(first_dir), (
        f"{logger_kit.plugin}: a second run made by the same factory writes to the first run's folder {os.fspath(first_dir)!r} "
        f"(versions {first.version!r} and {second.version!r}); choose the next free version when none is given"
    )
    if before is not None:
        after = reader()
        assert after == before, f"{logger_kit.plugin}: the first run's metrics changed after a second run: {before!r} became {after!r}"


def test_fabric_logs_through_the_logger(logger_kit: LoggerKit) -> None:
    import torch

    from weft import Fabric

    fabric = Fabric(accelerator="cpu", devices=1, loggers=logger_kit.name)
    logger = fabric.logger
    fabric.log("kit/fabric", torch.tensor(2.5), step=1)
    fabric.log_dict({"kit/fabric": 3.5, "kit/other": torch.tensor(0.5)}, step=2)
    # save, not finalize: Fabric finalizes its loggers itself when the process ends.
    logger_kit.call(logger, "weft_logger_save")
    read = _reader(logger_kit, logger, "read_metrics")
    got = read.get("kit/fabric")
    ok = got is not None and len(got) == 2 and all(s == ws and _same(v, wv) for (s, v), (ws, wv) in zip(got, [(1, 2.5), (2, 3.5)]))
    assert ok, (
        f"{logger_kit.hook('weft_logger_log_metrics')}: fabric.log / fabric.log_dict at steps 1 and 2 read back as {got!r}; "
        "expected [(1, 2.5), (2, 3.5)]"
    )
