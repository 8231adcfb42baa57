"""weft: keep your PyTorch training loop, switch devices, strategies and precisions by name.

``import weft`` is cheap on purpose: it imports neither torch nor any plugin and
scans no entry points. Names below are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it; resolved on first attribute access
_LAZY = {
    "Fabric": "weft.fabric",
    "hookimpl": "weft.hookspecs",
    "hookspec": "weft.hookspecs",
    "register": "weft.registry",
    "seed_everything": "weft.utilities.seed",
    "RNGState": "weft.utilities.rng",
    "PrecisionDtypes": "weft.records",
    "Launched": "weft.records",
    "StrategyCapabilities": "weft.records",
    "WeftError": "weft.errors",
    "ConfigurationError": "weft.errors",
    "ConfigurationTypeError": "weft.errors",
    "PluginNotFoundError": "weft.errors",
    "PluginConflictError": "weft.errors",
    "PluginContractError": "weft.errors",
    "PluginLoadError": "weft.errors",
    "StrategyClassNotFoundError": "weft.errors",
    "MisuseError": "weft.errors",
    "MisuseValueError": "weft.errors",
    "MisuseTypeError": "weft.errors",
    "ReduceOpError": "weft.errors",
    "NonFiniteNormError": "weft.errors",
    "CheckpointError": "weft.errors",
    "CollectiveTimeoutError": "weft.errors",
    "LaunchError": "weft.errors",
}

# public submodules reachable as attributes (``weft.strategies.DDPStrategy``); imported on first use
_SUBMODULES = ("strategies",)

__all__ = sorted(_LAZY) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"weft.{name}")  # the import binds it as an attribute of weft
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from weft.errors import (
        CheckpointError,
        CollectiveTimeoutError,
        ConfigurationError,
        ConfigurationTypeError,
        LaunchError,
        MisuseError,
        MisuseTypeError,
        MisuseValueError,
        NonFiniteNormError,
        PluginConflictError,
        PluginContractError,
        PluginLoadError,
        PluginNotFoundError,
        ReduceOpError,
        StrategyClassNotFoundError,
        WeftError,
    )
    from weft.fabric import Fabric
    from weft.hookspecs import hookimpl, hookspec
    from weft.records import Launched, PrecisionDtypes, StrategyCapabilities
    from weft.registry import register
    from weft.utilities.seed import seed_everything
