"""Find plugins by name through entry points, loading only what is asked for.

Each kind of plugin has an entry-point group (``weft.strategies``,
``weft.precisions``, ``weft.accelerators``, ``weft.environments``,
``weft.loggers``). The
entry-point name is the string users pass; its value points to a factory (a
class or function) that returns a new plugin object when called with no
arguments, or with the options a user gave as keyword arguments (see
:func:`create`). Keep a strategy's factory cheap: ``strategy="auto"`` creates
every installed strategy once per process to read its capabilities. Core's
built-ins are registered the same way, in core's own ``pyproject.toml``.

Reading the table costs one pass over installed distributions' metadata and
imports nothing; it happens on first use, never at ``import weft``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from typing import Any, Callable

from typing import TYPE_CHECKING

from weft import catalogue
from weft.errors import DOCS, ConfigurationError, PluginConflictError, PluginLoadError, PluginNotFoundError, WeftError

if TYPE_CHECKING:
    from weft.records import PluginRecord

KINDS = ("accelerators", "precisions", "strategies", "environments", "loggers")
_SINGULAR = {
    "accelerator": "accelerators",
    "precision": "precisions",
    "strategy": "strategies",
    "environment": "environments",
    "logger": "loggers",
}
# How messages name one plugin of each kind.
_LABELS = {
    "strategies": "strategy",
    "precisions": "precision",
    "accelerators": "accelerator",
    "environments": "cluster environment",
    "loggers": "logger",
}
CORE_DISTRIBUTION = "weft"

# Plugins registered from user code with `register`: (kind, name) -> record.
_registered: dict[tuple[str, str], PluginRecord] = {}
# Entry-point table, cached per value of sys.path (a test putting a *.dist-info on
# sys.path sees it without any explicit refresh).
_cache: tuple[tuple[str, ...], str, dict[str, dict[str, list[PluginRecord]]]] | None = None


def kind_of(kind: str) -> str:
    """Normalise ``"strategy"``/``"strategies"`` to the plural group suffix."""
    kind = _SINGULAR.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"Unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def canonical_distribution(name: str) -> str:
    """PEP 503 normalisation, so ``weft_ddp`` and ``weft-ddp`` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def register(kind: str, name: str, plugin: Callable[[], Any]) -> None:
    """Make ``plugin`` selectable as ``name`` without packaging it.

    :param kind: ``"strategy"``, ``"precision"``, ``"accelerator"``, ``"environment"`` or
        ``"logger"`` (plural forms accepted).
    :param name: the string users will pass, e.g. ``Fabric(strategy=name)``.
    :param plugin: a no-argument factory (usually the plugin class) returning a new plugin.

    A name registered here takes precedence over an entry point of the same name.

    .. versionadded:: 0.1
    """
    if not callable(plugin):
        raise TypeError(f"register() needs a class or factory for {name!r}, got {type(plugin).__name__}")
    from weft.records import PluginRecord

    kind = kind_of(kind)
    value = f"{getattr(plugin, '__module__', '?')}:{getattr(plugin, '__qualname__', repr(plugin))}"
    _registered[(kind, name)] = PluginRecord(kind, name, value, None, None, load=lambda: plugin)


def unregister(kind: str, name: str) -> None:
    """Undo :func:`register` (used by tests and the plugin-author kit)."""
    _registered.pop((kind_of(kind), name), None)


def _policy() -> str:
    # Part of the cache key: the allowlist can change between calls in one process.
    return f"{os.environ.get('WEFT_DISABLE_PLUGIN_AUTOLOAD', '')}|{os.environ.get('WEFT_PLUGINS', '')}"


def _allowed(distribution: str) -> bool:
    dist = canonical_distribution(distribution)
    if dist == CORE_DISTRIBUTION:
        return True  # core's built-ins are always available
    if os.environ.get("WEFT_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return False
    allow = os.environ.get("WEFT_PLUGINS", "").strip()
    if not allow:
        return True
    return dist in {canonical_distribution(d) for d in allow.split(",") if d.strip()}


def _requires_core(dist: Any) -> str | None:
    for req in dist.requires or ():
        match = re.match(r"\s*weft\s*(\(?\s*([<>=!~][^;]*?)\s*\)?)?\s*(;.*)?$", req)
        if match and ";" not in req:
            return (match.group(2) or "").strip() or None
    return None


def _scan() -> dict[str, dict[str, list[PluginRecord]]]:
    """Read every installed distribution's weft entry points (metadata only)."""
    import importlib_metadata

    from weft.records import PluginRecord

    table: dict[str, dict[str, list[PluginRecord]]] = {kind: {} for kind in KINDS}
    seen: set[str] = set()
    for dist in importlib_metadata.distributions():
        eps = [ep for ep in dist.entry_points if ep.group.startswith("weft.")]
        if not eps:
            continue
        dist_name = dist.metadata["Name"]
        canon = canonical_distribution(dist_name)
        if canon in seen or not _allowed(dist_name):
            continue  # the first copy on sys.path wins, as it would for `import`
        seen.add(canon)
        requires_core = None if canon == CORE_DISTRIBUTION else _requires_core(dist)
        for ep in eps:
            kind = ep.group[len("weft.") :]
            if kind not in table:
                continue
            record = PluginRecord(kind, ep.name, ep.value, dist_name, dist.version, ep.load, requires_core)
            table[kind].setdefault(ep.name, []).append(record)
    return table


def table() -> dict[str, dict[str, list[PluginRecord]]]:
    """The entry-point table: kind -> name -> records (more than one means a conflict)."""
    global _cache
    key = (tuple(sys.path), _policy())
    if _cache is None or _cache[:2] != key:
        _cache = (key[0], key[1], _scan())
    return _cache[2]


def records(kind: str) -> dict[str, list[PluginRecord]]:
    """Every name of one kind, from entry points and :func:`register`, without loading anything."""
    kind = kind_of(kind)
    merged = {name: list(recs) for name, recs in table()[kind].items()}
    for (k, name), record in _registered.items():
        if k == kind:
            merged[name] = [record]
    return merged


def names(kind: str) -> list[str]:
    """The names users may pass for one kind, sorted."""
    return sorted(records(kind))


def find(kind: str, name: str) -> PluginRecord:
    """The record for ``name``, or a clear error.

    ``name`` may be qualified with a distribution, ``"weft-fsdp:fsdp"``, to pick
    one of two distributions that claim the same name.
    """
    kind = kind_of(kind)
    wanted_dist = None
    if ":" in name:
        wanted_dist, name = name.split(":", 1)
    available = records(kind)
    candidates = available.get(name, [])
    if wanted_dist is not None:
        candidates = [
            r for r in candidates if r.distribution and canonical_distribution(r.distribution) == canonical_distribution(wanted_dist)
        ]
    if not candidates:
        raise PluginNotFoundError(_not_found_message(kind, name, wanted_dist, available))
    if len(candidates) > 1:
        raise PluginConflictError(_conflict_message(kind, name, candidates))
    return candidates[0]


def load(kind: str, name: str) -> Callable[[], Any]:
    """Import the entry point for ``name`` and return its plugin factory."""
    record = find(kind, name)
    try:
        return record.load()
    except Exception as exc:  # noqa: BLE001 - any failure of third-party code is reported the same way
        origin = f"distribution {record.distribution} {record.version}" if record.distribution else "weft.register()"
        raise PluginLoadError(
            f"The {kind[:-1] if kind != 'strategies' else 'strategy'} plugin {name!r} could not be loaded: "
            f"entry point '{name} = {record.value}' from {origin} raised {type(exc).__name__}: {exc}. "
            f"Other plugins are unaffected; reinstall or remove that distribution. See {DOCS}/plugins.md"
        ) from exc


def create(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """Build a new plugin object for ``name``.

    :param options: keyword arguments for the plugin's factory (``weft run --strategy-option
        KEY=VALUE``, the kit's ``--weft-strategy-option``). An option the factory does not take
        is a :class:`~weft.errors.ConfigurationError` naming it, the plugin and the parameters
        the factory takes (read with ``inspect.signature``; a factory taking ``**kwargs``
        checks names itself). An error the factory raises for given options is raised with the
        plugin's name: a weft error as its own class, anything else as a ``ConfigurationError``.

    .. versionchanged:: 0.3 ``options``.
    """
    factory = load(kind, name)
    options = dict(options or {})
    if options:
        check_options(kind, name, factory, options)
    try:
        plugin = factory(**options)
    except WeftError as exc:
        if options:
            # The factory refused one of the user's values: its message says which; say which plugin.
            named = _naming_plugin(exc, f"The {_LABELS[kind_of(kind)]} {name!r} refused the options {options}: ")
            if named is exc:
                raise
            raise named from exc
        raise PluginLoadError(f"Creating the plugin {name!r} ({kind}) failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        if options:  # most likely a value of the user's the factory could not take
            raise ConfigurationError(
                f"The {_LABELS[kind_of(kind)]} {name!r} refused the options {options}: {type(exc).__name__}: {exc}. "
                "Check each option's type and value against the plugin's documentation."
            ) from exc
        raise PluginLoadError(f"Creating the plugin {name!r} ({kind}) failed: {type(exc).__name__}: {exc}") from exc
    return plugin


def _naming_plugin(exc: Exception, prefix: str) -> Exception:
    """``exc`` again (same class, so ``except`` clauses still match) with ``prefix`` before its message."""
    try:
        return type(exc)(f"{prefix}{exc}")
    except Exception:  # noqa: BLE001 - an error class with another constructor: keep the original
        return exc


def factory_parameters(factory: Callable[..., Any]) -> tuple[list[str], bool] | None:
    """The keyword parameters ``factory`` takes, and whether it takes any (``**kwargs``);
    ``None`` when its signature cannot be read."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind is p.VAR_KEYWORD for p in parameters)


def check_options(kind: str, name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options ``factory`` does not take, before calling it (a factory with ``**kwargs``
    checks the rest itself)."""
    signature = factory_parameters(factory)
    if signature is None:
        return  # no signature to read (a builtin): the call itself decides
    named, takes_any = signature
    unknown = [key for key in options if key not in named]
    if unknown and not takes_any:
        accepted = ", ".join(named) or "none"
        target = getattr(factory, "__qualname__", repr(factory))
        raise ConfigurationError(
            f"The {_LABELS[kind_of(kind)]} {name!r} ({target}) takes no option {', '.join(map(repr, unknown))}. "
            f"Its parameters: {accepted}. Remove the option or choose a plugin that takes it."
        )


def _not_found_message(kind: str, name: str, wanted_dist: str | None, available: dict[str, list[PluginRecord]]) -> str:
    label = _LABELS[kind]
    installed = ", ".join(sorted(available)) or "none"
    shown = f"{wanted_dist}:{name}" if wanted_dist else name
    lines = [f"Unknown {label} {shown!r}. Installed {kind}: {installed}."]
    close = difflib.get_close_matches(name, list(available) + catalogue.published_names(kind), n=1, cutoff=0.6)
    provider = catalogue.provider(kind, name)
    if close and close[0] != name:
        lines.append(f"Did you mean {close[0]!r}?")
        provider = provider or (catalogue.provider(kind, close[0]) if close[0] not in available else None)
        if provider:
            lines.append(f"{close[0]!r} is provided by {provider}: pip install {provider}")
    elif provider:
        if not _allowed(provider):
            lines.append(
                f"{name!r} is provided by {provider}, which plugin autoload settings exclude "
                "(WEFT_PLUGINS / WEFT_DISABLE_PLUGIN_AUTOLOAD)."
            )
        else:
            lines.append(f"{name!r} is provided by {provider}: pip install {provider}")
    lines.append(f"See {DOCS}/plugins.md")
    return " ".join(lines)


def _conflict_message(kind: str, name: str, candidates: list[PluginRecord]) -> str:
    owners = " and ".join(f"{r.distribution} {r.version} ({r.value})" for r in candidates)
    pick = candidates[0].distribution
    return (
        f"Two distributions register the {kind} name {name!r}: {owners}. "
        f"Uninstall one, or choose explicitly with the qualified name '{pick}:{name}'."
    )
