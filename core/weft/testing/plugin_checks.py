"""The static checks every conformance kit runs, whatever the plugin's kind.

A kit (``pytest --weft-precision=NAME`` and the others) first proves that the name loads
through the registry, that the factory returns a new object each call, and that the
object's hooks are the ones weft will call: each ``weft_*`` method is a real hook (a
misspelt one is named together with the hook it probably meant), is marked
``@weft.hookimpl``, takes only arguments its specification has, and the kind's required
hooks are all there. Each check raises :class:`KitFailure` with a message naming the
plugin and the hook, so the same functions serve the pytest suites and direct calls.
"""

from __future__ import annotations

import difflib
import traceback
from typing import Any

from weft import hookspecs


class KitFailure(AssertionError):
    """A plugin fails a conformance check; the message names the plugin, the hook and the fix."""


#: Singular kind (the kits' word) -> the prefix its hooks carry.
HOOK_PREFIX = {"precision": "weft_precision_", "accelerator": "weft_accelerator_", "environment": "weft_environment_"}


def describe(kind: str, name: str) -> str:
    """``precision 'bf16-mixed' (weft-precision 0.1.0, weft_precision.mixed:...)``: never raises."""
    from weft.testing.attribution import describe_plugin

    return describe_plugin(None, kind, name)


def create(kind: str, name: str) -> Any:
    """A new plugin object for ``name``, or a :class:`KitFailure` saying why it cannot be made."""
    from weft import registry

    try:
        return registry.create(kind, name)
    except Exception as exc:  # noqa: BLE001 - reported with the plugin
        raise KitFailure(f"{describe(kind, name)}: creating it failed: {type(exc).__name__}: {exc}") from None


def implemented_hooks(plugin: Any) -> list[str]:
    """Names of the methods of ``plugin`` marked ``@weft.hookimpl``."""
    marker = f"{hookspecs.PROJECT}_impl"
    return sorted(n for n in dir(type(plugin)) if hasattr(getattr(type(plugin), n, None), marker))


def implements(plugin: Any, hook: str) -> bool:
    return hook in implemented_hooks(plugin)


def check_loads(kind: str, name: str) -> Any:
    """The name resolves, its distribution admits this weft, and the factory makes new objects.

    :returns: one plugin object.
    """
    from weft import registry
    from weft.compat import incompatibility

    plugin_name = describe(kind, name)
    try:
        record = registry.find(kind, name)
    except Exception as exc:  # noqa: BLE001
        raise KitFailure(f"{kind} {name!r} is not installed: {exc}") from None
    problem = incompatibility(record)
    if problem:
        raise KitFailure(f"{plugin_name}: {problem}")
    first, second = create(kind, name), create(kind, name)
    if second is first:
        raise KitFailure(f"{plugin_name}: the factory returned the same object twice; it must return a new plugin object on each call")
    prefix = HOOK_PREFIX[kind]
    if not any(n.startswith(prefix) for n in implemented_hooks(first)):
        raise KitFailure(
            f"{plugin_name}: the factory returned {first!r}, which implements no {prefix}* hook "
            "(mark the methods with @weft.hookimpl and name them after weft.hookspecs)"
        )
    return first


def check_hook_names(kind: str, name: str, plugin: Any) -> None:
    """Every ``weft_*`` method is a hook weft knows and is marked ``@weft.hookimpl``: the check
    ``Fabric(...)`` makes when it registers a plugin (:func:`weft.contract.hook_problems`).

    A misspelt hook is never called, and weft would use its fallback (or have none) without a word.
    """
    from weft.contract import hook_problems

    problems = hook_problems(plugin)
    if problems:
        raise KitFailure(f"{describe(kind, name)}: " + "; ".join(problems))


def check_signatures(kind: str, name: str, plugin: Any) -> None:
    """Each hook takes only arguments its specification has (pluggy passes them by name)."""
    from weft.testing.managers import PluginContractError, plugin_manager

    try:
        plugin_manager(plugin)
    except PluginContractError as exc:
        raise KitFailure(f"{describe(kind, name)}: {exc.reason}") from None


def check_required(kind: str, name: str, plugin: Any) -> None:
    """The hooks weft has no fallback for are implemented."""
    from weft.testing.managers import missing_hooks

    missing = missing_hooks(plugin, kind)
    if not missing:
        return
    hints = []
    for hook in missing:
        close = difflib.get_close_matches(hook, [n for n in dir(type(plugin)) if n.startswith("weft_")], n=1, cutoff=0.75)
        if close:
            hints.append(f"{close[0]} looks like a misspelling of {hook}")
    raise KitFailure(
        f"{describe(kind, name)} does not implement the required hook(s) {', '.join(missing)}"
        + (f" ({'; '.join(hints)})" if hints else "")
        + "; weft has no fallback for them (see weft.testing.REQUIRED_HOOKS and weft.hookspecs)"
    )


def call(kind: str, name: str, plugin: Any, hook: str, **arguments: Any) -> Any:
    """Call ``hook`` of ``plugin`` the way Fabric does (by name, through pluggy); a failure names the hook."""
    from weft.testing.managers import plugin_manager

    manager = plugin_manager(plugin, check=False)
    try:
        return getattr(manager.hook, hook)(**arguments)
    except Exception as exc:  # noqa: BLE001 - reported with the hook and the plugin
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        raise KitFailure(
            f"hook {hook} of {describe(kind, name)} raised {type(exc).__name__}: {exc} (called with {shown or 'no arguments'})\n"
            f"{traceback.format_exc()}"
        ) from None


def type_name(value: Any) -> str:
    return type(value).__name__


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a rank or a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_static(kind: str, name: str) -> Any:
    """All the checks above, in the order an author fixes them; returns a plugin object."""
    plugin = check_loads(kind, name)
    check_hook_names(kind, name, plugin)
    check_signatures(kind, name, plugin)
    check_required(kind, name, plugin)
    return plugin


def report(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a check inside a pytest test: a :class:`KitFailure` becomes a failure showing only its message."""
    import pytest

    try:
        return function(*args, **kwargs)
    except KitFailure as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except block: no "during handling" chain


def attempt(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a check for a session fixture: its result, or the :class:`KitFailure` it raised.

    Each test then reports the failure itself (see :func:`unwrap`), as a failed check rather
    than as an error in a fixture.
    """
    try:
        return function(*args, **kwargs)
    except KitFailure as exc:
        return exc


def unwrap(value: Any) -> Any:
    """What :func:`attempt` returned, or the failure it caught, reported by the calling test."""
    import pytest

    if isinstance(value, KitFailure):
        pytest.fail(str(value), pytrace=False)
    return value
