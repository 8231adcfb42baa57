"""Plugin managers holding only the plugins under test, and temporary registration by name."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import pluggy

from weft import hookspecs, registry
from weft.testing.attribution import describe_plugin

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


class PluginContractError(AssertionError):
    """A plugin does not satisfy the hook contract (unknown hook, bad signature, missing hook).

    :param plugin: the plugin at fault.
    :param reason: what is wrong, naming the hook.
    """

    def __init__(self, plugin: Any, reason: str) -> None:
        super().__init__(f"{describe_plugin(plugin)}: {reason}")
        self.plugin, self.reason = plugin, reason


def plugin_manager(*plugins: Any, check: bool = True) -> pluggy.PluginManager:
    """A plugin manager with weft's hook specifications and only ``plugins`` registered.

    :param plugins: plugin objects, registered in order (later ones are called first).
    :param check: also reject hook implementations that match no specification
        (usually a misspelt hook name).
    :raises PluginContractError: naming the plugin and the hook, when a hook
        implementation takes an argument its specification does not have, or
        (with ``check``) implements a hook that does not exist.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        try:
            pm.register(plugin, name=getattr(plugin, "name", None) or type(plugin).__name__)
        except pluggy.PluginValidationError as exc:
            reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginContractError(plugin, reason) from None
    if check:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginContractError(exc.plugin, f"{exc} (no such weft hook; see weft.hookspecs)") from None
    return pm


def missing_hooks(plugin: Any, kind: str) -> list[str]:
    """The hooks of :data:`REQUIRED_HOOKS` that ``plugin`` does not implement."""
    implemented = {impl_name for impl_name in dir(type(plugin)) if hasattr(getattr(type(plugin), impl_name, None), "weft_impl")}
    return [hook for hook in REQUIRED_HOOKS[kind] if hook not in implemented]


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
