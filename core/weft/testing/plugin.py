"""The weft pytest plugin: conformance-kit options and fixtures for plugin authors.

pytest loads this module in every session of an environment where weft is
installed (``pytest11`` entry point), so it imports nothing heavy: torch and the
plugins are imported by the fixtures and tests that need them, and the
conformance suite is collected only when ``--weft-strategy`` is given (the logger
suite only when ``--weft-logger`` is; the precision, accelerator and cluster-environment
suites with ``--weft-precision``, ``--weft-accelerator`` and ``--weft-environment`` when no
``--weft-strategy`` is given).

Fixtures (usable in any test suite):

- ``weft_plugin_manager``: ``make(*plugins)`` returns a plugin manager holding only those plugins;
- ``weft_register``: ``register(kind, name, factory)``, undone when the test ends;
- ``weft_hook_recorder``: ``record(fabric_or_manager)`` returns a started :class:`~weft.testing.HookRecorder`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

KIT_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conformance.py")
LOGGER_KIT_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logger_conformance.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("weft", "weft conformance kit")
    group.addoption(
        "--weft-strategy",
        metavar="NAME",
        default=None,
        help="run the weft conformance suite against the installed strategy NAME",
    )
    group.addoption(
        "--weft-precision",
        metavar="NAME",
        default=None,
        help="with --weft-strategy: the precision to run the strategy suite with (default 32-true); "
        "alone: run the weft precision suite against the installed precision NAME",
    )
    group.addoption(
        "--weft-devices", metavar="N", type=int, default=2, help="processes for the multi-process cases (default 2; 1 for single-process strategies)"
    )
    group.addoption(
        "--weft-accelerator",
        metavar="NAME",
        default=None,
        help="with --weft-strategy: the accelerator of the strategy suite (default cpu: processes talk over gloo); "
        "alone: run the weft accelerator suite against the installed accelerator NAME",
    )
    group.addoption("--weft-timeout", metavar="SECONDS", type=float, default=180.0, help="time limit per launched job (default 180)")
    group.addoption(
        "--weft-rtol",
        metavar="R",
        type=float,
        default=None,
        help="relative error allowed against the kit's reference gradients/parameters (default 1e-4 when the "
        "precision computes in float32/float64, e.g. 32-true; else 0.05). Lossy strategies such as compressed "
        "communication pass more, e.g. --weft-rtol=0.01",
    )
    group.addoption(
        "--weft-strategy-option",
        metavar="KEY=VALUE",
        action="append",
        default=None,
        help="keyword argument for the strategy's factory (repeatable), e.g. --weft-strategy-option sync_every=2; "
        "values are Python literals (2, 0.5, True, None), anything else a string",
    )
    group.addoption(
        "--weft-logger",
        metavar="NAME",
        default=None,
        help="run the weft logger suite against the installed logger NAME (in this process, no devices needed)",
    )
    group.addoption(
        "--weft-environment",
        metavar="NAME",
        default=None,
        help="run the weft cluster-environment suite against the installed environment NAME (a 2-process job)",
    )
    group.addoption(
        "--weft-environment-vars",
        metavar="JSON",
        default=None,
        help="the environment's own variables, one JSON object per process, e.g. "
        '\'[{"SLURM_PROCID": "0", ...}, {"SLURM_PROCID": "1", ...}]\' (default: start the job with torchrun)',
    )


def _kit(name: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


#: Option -> the suite it runs. --weft-precision and --weft-accelerator run their own suite only
#: without --weft-strategy; with it they configure the strategy suite.
KIT_MODULES = {
    "weft_strategy": KIT_MODULE,
    "weft_logger": LOGGER_KIT_MODULE,
    "weft_precision": _kit("precision_conformance.py"),
    "weft_accelerator": _kit("accelerator_conformance.py"),
    "weft_environment": _kit("environment_conformance.py"),
}
STRATEGY_KIT_DEFAULTS = {"weft_precision": "32-true", "weft_accelerator": "cpu"}


def pytest_configure(config: pytest.Config) -> None:
    strategy = config.getoption("weft_strategy", default=None)
    chosen = [option for option in KIT_MODULES if config.getoption(option, default=None)]
    if strategy:
        chosen = [option for option in chosen if option not in STRATEGY_KIT_DEFAULTS]
        for option, default in STRATEGY_KIT_DEFAULTS.items():
            if getattr(config.option, option, None) is None:
                setattr(config.option, option, default)
    suites = [KIT_MODULES[option] for option in chosen]
    if not suites:
        return
    # Collect the suites. With no paths on the command line they run alone (the project's own
    # testpaths are not wanted); with explicit paths they run alongside them.
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        args = list(config.args) + [module for module in suites if module not in config.args]
    else:
        args = suites
    config.args[:] = args


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    lines = []
    strategy = config.getoption("weft_strategy", default=None)
    if strategy:
        lines.append(
            f"weft conformance kit: strategy={strategy} precision={config.getoption('weft_precision')} "
            f"devices={config.getoption('weft_devices')} accelerator={config.getoption('weft_accelerator')}"
        )
    logger = config.getoption("weft_logger", default=None)
    if logger:
        lines.append(f"weft logger kit: logger={logger}")
    for kind in ("precision", "accelerator", "environment"):
        name = config.getoption(f"weft_{kind}", default=None)
        if name and not (strategy and f"weft_{kind}" in STRATEGY_KIT_DEFAULTS):
            lines.append(f"weft {kind} kit: {kind}={name}")
    return lines or None


@pytest.fixture
def weft_plugin_manager() -> Callable[..., Any]:
    """``make(*plugins, check=True)``: a plugin manager with weft's hookspecs and only these plugins."""
    from weft.testing.managers import plugin_manager

    return plugin_manager


@pytest.fixture
def weft_register() -> Iterator[Callable[[str, str, Callable[[], Any]], None]]:
    """``register(kind, name, factory)``: selectable by name until the test ends."""
    from weft.testing.managers import registered

    stack = []

    def register(kind: str, name: str, factory: Callable[[], Any]) -> None:
        context = registered(kind, name, factory)
        context.__enter__()
        stack.append(context)

    yield register
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture
def weft_hook_recorder() -> Iterator[Callable[[Any], Any]]:
    """``record(fabric_or_plugin_manager)``: a started HookRecorder, stopped when the test ends."""
    from weft.testing.recorder import HookRecorder

    recorders = []

    def record(target: Any) -> HookRecorder:
        recorder = HookRecorder(target).start()
        recorders.append(recorder)
        return recorder

    yield record
    for recorder in recorders:
        recorder.stop()
