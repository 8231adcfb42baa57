"""Choosing and registering Fabric's plugins: names to plugin objects, 'auto' choices, the plugin manager.

``Fabric(...)`` turns each argument into a plugin here (``_plugin_or_create``, ``_pick_accelerator``,
``_detect_environment``), sorts ``plugins=`` by kind (``_sort_plugins``) and registers them, each
checked against its kind's contract, with a pluggy manager (``_new_plugin_manager``).
"""

from __future__ import annotations

from typing import Any

import pluggy

from weft import contract, hookspecs, registry
from weft.errors import ConfigurationError, ConfigurationTypeError


def _hook_names(plugin: Any) -> set[str]:
    """The weft hooks a plugin object implements (methods marked with ``@weft.hookimpl``)."""
    cls = type(plugin)
    return {a for a in dir(cls) if a.startswith("weft_") and hasattr(getattr(cls, a, None), "weft_impl")}


def _plugin_kinds(plugin: Any) -> set[str]:
    """Which kinds a plugin object serves, read off the hooks it implements."""
    kinds = {name.split("_")[1] for name in _hook_names(plugin)}
    return kinds & {"accelerator", "precision", "strategy", "environment"}


def _sort_plugins(plugins: Any) -> tuple[dict[str, Any], list[Any]]:
    """Split ``plugins=`` into one plugin per kind and extras that span kinds or none."""
    given = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    by_kind: dict[str, Any] = {}
    extras = []
    for plugin in given:
        kinds = _plugin_kinds(plugin)
        if len(kinds) == 1:
            (kind,) = kinds
            if kind in by_kind:
                raise ConfigurationError(f"plugins= holds two {kind} plugins: {by_kind[kind]!r} and {plugin!r}")
            by_kind[kind] = plugin
        elif not _hook_names(plugin):
            raise ConfigurationTypeError(
                f"plugins= holds {plugin!r}, which implements no weft hook: pass accelerator, strategy, "
                "precision or cluster environment plugins, or objects with @weft.hookimpl methods"
            )
        else:
            extras.append(plugin)
    return by_kind, extras


def _new_plugin_manager(plugins: dict[str, Any]) -> pluggy.PluginManager:
    """A plugin manager with weft's hook specifications and ``plugins`` (name -> object) registered,
    each checked against the hook contract of the kind its name says (see :mod:`weft.contract`)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins.items():
        contract.register(pm, plugin, name, _KIND_OF_NAME.get(name.partition("-")[0]))
    return pm


# The names plugins are registered under -> the kind whose required hooks they must implement.
_KIND_OF_NAME = {kind: kind for kind in ("accelerator", "environment", "precision", "strategy")} | {"logger": "logger"}


def _plugin_or_create(kind: str, value: Any, options: dict[str, Any] | None = None) -> Any:
    """The plugin named ``value`` (created with ``options`` as keyword arguments), or ``value``
    itself when it is a plugin object already."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        from weft.compat import incompatibility

        problem = incompatibility(registry.find(kind, str(value)))
        if problem:
            raise ConfigurationError(f"{kind[:-1] if kind != 'strategies' else 'strategy'} {str(value)!r}: {problem}")
        return registry.create(kind, str(value), options)
    return value


def _launching_strategies_hint() -> str:
    """Which installed strategies start their own processes (their capabilities say
    ``launches_processes``), for a message about a strategy that cannot."""
    from weft import strategy_choice

    names = strategy_choice.launching(strategy_choice.scan()[0])
    if not names:
        return "No installed strategy starts processes itself (none declares launches_processes)"
    return f"Use a strategy that starts them: {', '.join(repr(n) for n in names)}"


def _hooks_of(plugin: Any) -> Any:
    """The hooks of one plugin alone, to ask it something before the Fabric's manager exists."""
    return _new_plugin_manager({"plugin": plugin}).hook


def _pick_accelerator(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value != "auto":
        plugin = registry.create("accelerators", value)
        if not _hooks_of(plugin).weft_accelerator_is_available():
            available = [n for n in registry.names("accelerators") if _available(n)]
            raise ConfigurationError(
                f"accelerator={value!r} is not available on this machine. Available: {', '.join(available)}."
            )
        return plugin
    best, best_priority = None, None
    for name in registry.names("accelerators"):
        try:
            plugin = registry.create("accelerators", name)
        except Exception:  # noqa: BLE001 - a broken optional accelerator must not break 'auto'
            continue
        hooks = _hooks_of(plugin)
        if not hooks.weft_accelerator_is_available():
            continue
        priority = hooks.weft_accelerator_auto_priority() or 0
        if best_priority is None or priority > best_priority:
            best, best_priority = plugin, priority
    if best is None:
        raise ConfigurationError("accelerator='auto' found no available accelerator")
    return best


def _available(name: str) -> bool:
    try:
        plugin = registry.create("accelerators", name)
    except Exception:  # noqa: BLE001
        return False
    return bool(_hooks_of(plugin).weft_accelerator_is_available())


def _detect_environment() -> Any:
    best, best_score = None, None
    for name in registry.names("environments"):
        plugin = registry.create("environments", name)
        score = _hooks_of(plugin).weft_environment_detect()
        if score is not None and (best_score is None or score > best_score):
            best, best_score = plugin, score
    if best is None:
        raise ConfigurationError("no cluster environment matched this process (is weft installed correctly?)")
    return best
