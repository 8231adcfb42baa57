"""Plugin managers holding only the plugins under test, and temporary registration by name."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import pluggy

from weft import contract, hookspecs, registry

# The contract lives in core (Fabric checks every plugin it registers); the kit re-exports it.
from weft.contract import REQUIRED_HOOKS, missing_hooks  # noqa: E402,F401 - re-exported
from weft.errors import PluginContractError  # noqa: E402,F401 - re-exported


def plugin_manager(*plugins: Any, check: bool = True) -> pluggy.PluginManager:
    """A plugin manager with weft's hook specifications and only ``plugins`` registered.

    :param plugins: plugin objects, registered in order (later ones are called first).
    :param check: also reject ``weft_*`` methods that are no hook (usually a misspelt hook
        name) or that are not marked ``@weft.hookimpl``, as ``Fabric(...)`` does
        (:func:`weft.contract.check_plugin`).
    :raises PluginContractError: naming the plugin and the hook, when a hook
        implementation takes an argument its specification does not have, or
        (with ``check``) a method is no hook or is unmarked.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        contract.register(pm, plugin, getattr(plugin, "name", None) or type(plugin).__name__, check=check)
    return pm


@contextlib.contextmanager
def registered(kind: str, name: str, factory: Callable[[], Any]) -> Iterator[None]:
    """Make ``factory`` selectable as ``name`` inside the block, then restore what was there.

    :param kind: ``"strategy"``, ``"precision"``, ``"accelerator"`` or ``"environment"``.
    :param name: the name to select it by, e.g. ``Fabric(strategy=name)``.
    :param factory: a no-argument callable returning a new plugin object.

    Example::

        with registered("strategy", "mine", MyStrategy):
            Fabric(strategy="mine")
    """
    key = (registry.kind_of(kind), name)
    previous = registry._registered.get(key)
    registry.register(kind, name, factory)
    try:
        yield
    finally:
        registry.unregister(kind, name)
        if previous is not None:
            registry._registered[key] = previous
