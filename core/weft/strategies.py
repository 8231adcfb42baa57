"""Strategy classes by name, from one public place: ``from weft.strategies import DDPStrategy``.

The counterpart of ``lightning.fabric.strategies``. Nothing is imported until a name is asked
for; then the name is looked up among the installed strategy entry points (the class an entry
point names, e.g. ``ddp = "some_module:DDPStrategy"`` provides ``DDPStrategy``) and only the
plugin that provides it is loaded. Core names no plugin module: whatever strategy classes the
installed distributions register are available here, first-party or not.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import Any

from weft.errors import DOCS, PluginConflictError, StrategyClassNotFoundError


def _providers(name: str) -> list[Any]:
    """The entry-point records whose target is an attribute called ``name``, one per distinct target."""
    from weft import registry

    found: dict[str, Any] = {}
    for records in registry.records("strategies").values():
        for record in records:
            if record.value.rpartition(":")[2].rpartition(".")[2] == name:
                found.setdefault(record.value, record)
    return list(found.values())


def _class_names() -> list[str]:
    """Class-like names (CamelCase) the installed strategy entry points point to."""
    from weft import registry

    names = set()
    for records in registry.records("strategies").values():
        for record in records:
            attribute = record.value.rpartition(":")[2].rpartition(".")[2]
            if attribute[:1].isupper():
                names.add(attribute)
    return sorted(names)


def _missing(name: str) -> Exception:
    from weft import catalogue, registry

    # An install hint only: the published distribution whose package defines that class.
    distribution = catalogue.provider("strategy classes", name)
    installed = ", ".join(_class_names()) or "none"
    hint = ""
    if distribution and not registry._allowed(distribution):
        hint = f" It is provided by {distribution}, which WEFT_PLUGINS / WEFT_DISABLE_PLUGIN_AUTOLOAD exclude."
    elif distribution:
        hint = f" It is provided by {distribution}: pip install {distribution}."
    message = (
        f"weft.strategies has no {name!r}: no installed plugin registers a strategy class of that name.{hint} "
        f"Installed strategy classes: {installed}. See {DOCS}/plugins.md"
    )
    if name[:1].isupper():
        # A class name: `from weft.strategies import X` would replace an AttributeError's message
        # by Python's generic one, so this says it as an ImportError.
        return StrategyClassNotFoundError(message)
    return AttributeError(message)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)  # module protocol probes (__path__, __wrapped__...) must not scan
    providers = _providers(name)
    if not providers:
        raise _missing(name)
    if len(providers) > 1:
        owners = " and ".join(f"{r.distribution or 'weft.register()'} ({r.value})" for r in providers)
        raise PluginConflictError(
            f"Two installed plugins provide a strategy class named {name!r}: {owners}. Import it from its "
            "own package instead, or uninstall one."
        )
    from weft import registry

    # Loaded through the registry, so a plugin that fails to import is reported as a PluginLoadError.
    record = providers[0]
    value = registry.load("strategies", record.name if not record.distribution else f"{record.distribution}:{record.name}")
    if not isinstance(value, type):
        raise _missing(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return _class_names()
