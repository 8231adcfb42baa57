"""Say which plugin and which hook a failure comes from, in words a plugin author can act on."""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

_KIND_OF_PREFIX = {
    "weft_strategy_": "strategy",
    "weft_precision_": "precision",
    "weft_accelerator_": "accelerator",
    "weft_environment_": "environment",
    "weft_logger_": "logger",
}


def describe_plugin(plugin: Any, kind: str | None = None, name: str | None = None) -> str:
    """A one-line description: ``strategy 'ddp' (weft-ddp 0.1.0, weft_ddp.strategy:DDPStrategy)``.

    :param plugin: the plugin object (or ``None`` when only the name is known).
    :param kind: ``"strategy"``, ``"precision"``, ... used to look the name up in the registry.
    :param name: the name the plugin was selected by; defaults to its ``name`` attribute.
    """
    name = name or getattr(plugin, "name", None)
    where = f"{type(plugin).__module__}:{type(plugin).__qualname__}" if plugin is not None else None
    origin = None
    if kind and name:
        try:
            from weft import registry

            record = registry.find(kind, str(name))
            origin = f"{record.distribution} {record.version}" if record.distribution else "registered in code"
            where = where or record.value
        except Exception:  # noqa: BLE001 - a description must never fail
            origin = None
    if not (kind and name):
        return f"plugin {where}"
    details = ", ".join(x for x in (origin, where) if x)
    return f"{kind} {name!r} ({details})" if details else f"{kind} {name!r}"


def kind_of_hook(hook_name: str) -> str | None:
    """The plugin kind a hook belongs to, from its prefix (``None`` for ``weft_validate``)."""
    for prefix, kind in _KIND_OF_PREFIX.items():
        if hook_name.startswith(prefix):
            return kind
    return None


def hook_in_traceback(tb: TracebackType | None) -> tuple[str, Any] | None:
    """The innermost plugin hook implementation a traceback passes through: ``(hook, plugin)``.

    A frame counts when its function is named like a hook (``weft_*``) and it is a
    method (``self`` is the plugin). Frames of weft's own hook specifications do not count.
    """
    found = None
    for frame, _ in traceback.walk_tb(tb):
        code = frame.f_code
        if not code.co_name.startswith("weft_") or code.co_filename.endswith("hookspecs.py"):
            continue
        plugin = frame.f_locals.get("self")
        if plugin is not None:
            found = (code.co_name, plugin)
    return found


def explain_exception(exc: BaseException, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Describe an exception raised while running a plugin: message, hook and plugin.

    :param exc: the exception.
    :param names: ``{kind: selected name}``, to describe the plugin with its registry entry.
    :returns: ``{"error", "hook", "plugin", "traceback"}``; ``hook``/``plugin`` are ``None``
        when the failure did not come from inside a hook implementation.
    """
    names = names or {}
    hook, plugin_text = None, None
    found = hook_in_traceback(exc.__traceback__)
    if found is not None:
        hook, plugin = found
        kind = kind_of_hook(hook)
        plugin_text = describe_plugin(plugin, kind, names.get(kind) if kind else None)
    else:
        # weft names the hook itself when a plugin leaves a required one out.
        text = str(exc)
        for word in text.replace("'", " ").split():
            if word.startswith("weft_") and kind_of_hook(word):
                hook = word.rstrip(".,;:")
                kind = kind_of_hook(hook)
                plugin_text = describe_plugin(None, kind, names.get(kind)) if names.get(kind) else None
                break
    return {
        "error": f"{type(exc).__name__}: {exc}",
        "hook": hook,
        "plugin": plugin_text,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
