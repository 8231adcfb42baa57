"""The hook contract a plugin object must keep, checked whenever a plugin joins a plugin manager.

pluggy alone accepts a plugin whose hook name is misspelt (the method is never called, and
weft quietly uses its fallback), a method named after a hook but not marked
``@weft.hookimpl`` (never called either), and a strategy without ``weft_strategy_save_checkpoint``
(found out only when ``fabric.save`` does nothing). :func:`register` refuses all of them with a
:class:`~weft.errors.PluginContractError` naming the plugin class, the method and, for a
misspelling, the hook it probably meant. ``Fabric(...)`` and the conformance kit
(:func:`weft.testing.managers.plugin_manager`) both register through it.

The name and required-hook checks look at the class only, so they run once per plugin class
(and kind) per process; pluggy's own argument check runs on every registration, as before.

.. versionadded:: 0.2
"""

from __future__ import annotations

import difflib
import types
from typing import Any

from weft import hookspecs
from weft.errors import PluginContractError

#: Hooks a plugin of each kind must implement: weft has no fallback for them
#: (a Fabric raises, or cannot work, when nobody answers).
REQUIRED_HOOKS: dict[str, tuple[str, ...]] = {
    "strategy": (
        "weft_strategy_all_reduce",
        "weft_strategy_all_gather",
        "weft_strategy_broadcast",
        "weft_strategy_barrier",
        "weft_strategy_save_checkpoint",
        "weft_strategy_load_checkpoint",
        "weft_strategy_clip_gradients_norm",
        "weft_strategy_clip_gradients_value",
    ),
    "accelerator": (
        "weft_accelerator_is_available",
        "weft_accelerator_device_count",
        "weft_accelerator_parse_devices",
        "weft_accelerator_get_device",
    ),
    "precision": ("weft_precision_dtypes",),
    "environment": ("weft_environment_detect",),
    # Every logger hook: a logger that ignored metrics or never closed its files would lose
    # data silently. weft.loggers.Logger implements all four by delegating to its methods.
    "logger": ("weft_logger_log_metrics", "weft_logger_log_hyperparams", "weft_logger_save", "weft_logger_finalize"),
}

_MARKER = f"{hookspecs.PROJECT}_impl"
#: Every hook weft specifies (functions of weft.hookspecs marked with @hookspec).
HOOK_NAMES: frozenset[str] = frozenset(
    name for name, value in vars(hookspecs).items() if name.startswith("weft_") and hasattr(value, f"{hookspecs.PROJECT}_spec")
)

# (plugin class, kind) pairs that passed the class-level checks: checking again would find the same.
_checked: set[tuple[type, str | None]] = set()


def describe(plugin: Any, kind: str | None = None) -> str:
    """``strategy plugin my_pkg.strategy:MyStrategy``: the plugin's kind and class, for messages."""
    if isinstance(plugin, types.ModuleType):
        where = f"module {plugin.__name__}"
    else:
        where = f"{type(plugin).__module__}:{type(plugin).__qualname__}"
    return f"{kind} plugin {where}" if kind else f"plugin {where}"


def _attributes(plugin: Any) -> dict[str, Any]:
    """The plugin's attributes as pluggy sees them, read off the class (properties are not run)."""
    if isinstance(plugin, types.ModuleType):
        return dict(vars(plugin))
    cls = type(plugin)
    found = {}
    for name in dir(cls):
        try:
            found[name] = getattr(cls, name, None)
        except Exception:  # noqa: BLE001 - a descriptor that refuses class access is no hook
            found[name] = None
    return found


def hook_problems(plugin: Any) -> list[str]:
    """What is wrong with the names of ``plugin``'s hook methods, one sentence each.

    A callable named ``weft_*`` that is no hook (usually a misspelling, marked or not), a method
    named after a hook but not marked ``@weft.hookimpl``, and a marked method whose hook
    (its name, or its ``specname``) does not exist: pluggy would call none of them.
    """
    problems = []
    for attribute, value in sorted(_attributes(plugin).items()):
        options = getattr(value, _MARKER, None) if value is not None else None
        is_dict = isinstance(options, dict)
        hook = (options.get("specname") if is_dict else None) or attribute
        if not (attribute.startswith("weft_") or is_dict) or not callable(value):
            continue
        if hook not in HOOK_NAMES:
            close = difflib.get_close_matches(hook, sorted(HOOK_NAMES), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else "; hook names are listed in weft.hookspecs"
            problems.append(f"{attribute}: no such weft hook, so weft would never call it{hint}")
        elif not is_dict:
            problems.append(
                f"{attribute} is named after a weft hook but not marked with @weft.hookimpl, so weft would never "
                "call it; decorate it with @weft.hookimpl (from weft.hookspecs import hookimpl)"
            )
    return problems


def implemented_hooks(plugin: Any) -> set[str]:
    """The hooks ``plugin`` implements: methods marked with ``@weft.hookimpl``."""
    found = set()
    for attribute, value in _attributes(plugin).items():
        options = getattr(value, _MARKER, None) if value is not None else None
        if isinstance(options, dict):
            found.add(options.get("specname") or attribute)
    return found


def missing_hooks(plugin: Any, kind: str) -> list[str]:
    """The hooks of :data:`REQUIRED_HOOKS` for ``kind`` that ``plugin`` does not implement."""
    implemented = implemented_hooks(plugin)
    return [hook for hook in REQUIRED_HOOKS.get(kind, ()) if hook not in implemented]


def check_plugin(plugin: Any, kind: str | None = None) -> None:
    """Raise when ``plugin`` breaks the hook contract for a plugin of ``kind``.

    :param plugin: the plugin object.
    :param kind: ``"strategy"``, ``"accelerator"``, ``"precision"``, ``"environment"``,
        ``"logger"``, or ``None`` for an extra plugin (no hook is required of it).
    :raises PluginContractError: naming the plugin class and each misspelt, unmarked or
        missing hook (with the hook a misspelling probably meant).
    """
    key = (type(plugin), kind)
    if key in _checked:
        return
    problems = hook_problems(plugin)
    missing = missing_hooks(plugin, kind) if kind else []
    if missing:
        problems.append(
            f"the required hook(s) {', '.join(missing)} are not implemented: weft has no fallback for them "
            "(see weft.contract.REQUIRED_HOOKS and weft.hookspecs)"
        )
    if problems:
        reason = "; ".join(problems)
        raise PluginContractError(f"{describe(plugin, kind)}: {reason}", plugin=plugin, reason=reason)
    if not isinstance(plugin, types.ModuleType):  # a module's attributes are its own: not shared by a class
        _checked.add(key)


def register(pm: Any, plugin: Any, name: str, kind: str | None = None, check: bool = True) -> None:
    """Check ``plugin`` with :func:`check_plugin`, then register it with the pluggy manager ``pm``.

    :param check: run :func:`check_plugin` (``False`` only in tests that call a broken plugin's
        hooks on purpose; pluggy's argument check still runs).
    :raises PluginContractError: from :func:`check_plugin`, or when pluggy refuses an
        implementation (an argument its specification does not have, a wrapper that is no
        generator...), in weft's words, naming the plugin and the hook.
    """
    import pluggy

    if check:
        check_plugin(plugin, kind)
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        reason = f"{detail}; an implementation may take only arguments its specification in weft.hookspecs has"
        raise PluginContractError(f"{describe(plugin, kind)}: {reason}", plugin=plugin, reason=reason) from None


#: The plugin API: the modules a plugin may import from weft, each with the names it may use
#: (``None``: every public name of the module: its ``__all__`` or, without one, the classes and
#: functions it defines and its constants, none starting with ``_``). Everything else (``weft.builtins``, ``weft.fabric``, ``_private``
#: names) may change in any release. ``weft.utilities.*`` (every submodule) is public too.
#: First-party plugins keep to it; tests/core/test_plugin_api.py checks that they do.
PLUGIN_API: dict[str, tuple[str, ...] | None] = {
    "weft": None,
    "weft.hookspecs": ("hookimpl", "hookspec", "PROJECT"),
    "weft.errors": None,
    "weft.records": None,
    "weft.distributed": None,
    "weft.launch": ("launch_processes", "spawn_processes", "elastic_config", "run_elastic", "describe_failures"),
    "weft.checkpoint": None,
    "weft.clipping": None,
    "weft.devices": None,
    "weft.loggers": None,
    "weft.capabilities": None,
    "weft.utilities": None,
    # The sharded-folder format (what `weft consolidate` reads), for sharding strategies that write it.
    "weft.consolidate": (
        "FORMAT", "META_FILE", "is_sharded_checkpoint", "missing_metadata", "read_sharded",
        "weights_only_load_planner", "consolidate",
    ),
}


def is_plugin_api(module: str, name: str | None = None) -> bool:
    """Whether plugins may import ``module`` (and, given ``name``, use ``module.name``).

    :param module: a dotted module name, e.g. ``"weft.distributed"``.
    :param name: an attribute of it, e.g. ``"broadcast_tensor"``; a submodule's name counts when
        the submodule itself is part of the API (``from weft import checkpoint``).
    """
    import importlib

    if module not in PLUGIN_API and not module.startswith("weft.utilities."):
        return False
    if name is None:
        return True
    if f"{module}.{name}" in PLUGIN_API or (module == "weft.utilities" and not name.startswith("_")):
        return True  # a public submodule (weft.utilities' submodules are all public)
    allowed = PLUGIN_API.get(module)
    if allowed is not None:
        return name in allowed
    if name.startswith("_"):
        return False
    try:
        value = importlib.import_module(module)
    except ImportError:
        return False
    exported = getattr(value, "__all__", None)
    if exported is not None:
        return name in exported
    # Without __all__: what the module defines (not what it imports for itself, such as typing's
    # Any), and its constants.
    attribute = getattr(value, name, None)
    if isinstance(attribute, (str, int, float, tuple, frozenset)) and not isinstance(attribute, bool):
        return True
    return getattr(attribute, "__module__", None) == module
