"""The weft pytest plugin: conformance-kit options and fixtures for plugin authors.

pytest loads this module in every session of an environment where weft is
installed (``pytest11`` entry point), so it imports nothing heavy: torch and the
plugins are imported by the fixtures and tests that need them, and the
conformance suite is collected only when ``--weft-strategy`` is given (the logger
suite only when ``--weft-logger`` is).

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
    group.addoption("--weft-precision", metavar="NAME", default="32-true", help="precision to run the suite with (default 32-true)")
    group.addoption(
        "--weft-devices", metavar="N", type=int, default=2, help="processes for the multi-process cases (default 2; 1 for single-process strategies)"
    )
    group.addoption("--weft-accelerator", metavar="NAME", default="cpu", help="accelerator (default cpu: processes talk over gloo)")
    group.addoption("--weft-timeout", metavar="SECONDS", type=float, default=180.0, help="time limit per launched job (default 180)")
    group.addoption(
        "--weft-rtol",
        metavar="R",
        type=float,
        default=0.05,
        help="relative error allowed against the kit's reference gradients/parameters (default 0.05; "
        "lossy strategies such as compressed communication need some)",
    )
    group.addoption(
        "--weft-logger",
        metavar="NAME",
        default=None,
        help="run the weft logger suite against the installed logger NAME (in this process, no devices needed)",
    )


def pytest_configure(config: pytest.Config) -> None:
    suites = [
        module
        for option, module in (("weft_strategy", KIT_MODULE), ("weft_logger", LOGGER_KIT_MODULE))
        if config.getoption(option, default=None)
    ]
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
