"""Tools for people who write weft plugins: a conformance kit and pytest fixtures.

``pytest --weft-strategy=NAME`` runs the conformance suite against any installed
strategy (see :mod:`weft.testing.plugin`, registered with pytest through the
``pytest11`` entry point). The helpers below are also usable on their own:

- :func:`plugin_manager` builds a plugin manager holding only the plugins under test;
- :func:`registered` makes a plugin selectable by name for the duration of a block;
- :class:`HookRecorder` records which hooks ran, in what order, with what arguments.

Importing this package is cheap: names are loaded on first use.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "plugin_manager": "weft.testing.managers",
    "registered": "weft.testing.managers",
    "describe_plugin": "weft.testing.attribution",
    "HookRecorder": "weft.testing.recorder",
    "HookCall": "weft.testing.recorder",
    "REQUIRED_HOOKS": "weft.testing.managers",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weft.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from weft.testing.attribution import describe_plugin
    from weft.testing.managers import REQUIRED_HOOKS, plugin_manager, registered
    from weft.testing.recorder import HookCall, HookRecorder
