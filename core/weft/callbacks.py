"""``Fabric(callbacks=...)`` and ``fabric.call(name, ...)``: call a method on every callback that has it.

A callback is any object. ``fabric.call("on_epoch_end", epoch=3)`` calls ``on_epoch_end`` on
each callback that defines it, in the order given, on every rank; keyword arguments a method
does not take are left out (so callbacks may take different subsets), as in Lightning Fabric.

.. versionadded:: 0.2
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

from weft.attributed import AttributedError, attributed


class CallbackError(AttributedError):
    """A callback raised during ``fabric.call``. Also an instance of the class the callback raised."""


def configure(callbacks: Any) -> list[Any]:
    """The list of callbacks ``Fabric(callbacks=...)`` means: one object, or a list or tuple of them.

    A copy: weft adds a set-up LightningModule to it, and must not change the user's list.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, (list, tuple)):
        return list(callbacks)
    return [callbacks]


# function -> names of the keyword arguments it takes, or None for "all of them"
_accepted: dict[Any, tuple[str, ...] | None] = {}


def _accepted_names(method: Callable[..., Any]) -> tuple[str, ...] | None:
    key = getattr(method, "__func__", method)
    try:
        return _accepted[key]
    except (KeyError, TypeError):  # TypeError: an unhashable callable; inspect it each time
        pass
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        names = None  # no signature to read: pass everything, as Lightning does
    else:
        names = None if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters) else tuple(p.name for p in parameters)
    try:
        _accepted[key] = names
    except TypeError:
        pass
    return names


def filter_kwargs(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``method`` takes (all of them when it takes ``**kwargs``)."""
    if not kwargs:
        return kwargs
    names = _accepted_names(method)
    if names is None:
        return kwargs
    return {name: kwargs[name] for name in names if name in kwargs}


def call(callbacks: list[Any], hook_name: str, args: tuple, kwargs: dict[str, Any], warn: bool) -> None:
    """Call ``hook_name`` on each callback that has it; a failure names the callback.

    :param warn: whether this process reports a non-callable attribute (rank 0 only, as Lightning).
    """
    for callback in callbacks:
        method = getattr(callback, hook_name, None)
        if method is None:
            continue
        if not callable(method):
            if warn:
                warnings.warn(
                    f"Skipping the callback `{type(callback).__name__}.{hook_name}` because it is not callable.",
                    stacklevel=3,
                )
            continue
        try:
            method(*args, **filter_kwargs(method, kwargs))
        except Exception as exc:
            message = (
                f"callback {type(callback).__name__}.{hook_name} raised {type(exc).__name__}: {exc} "
                f"(in fabric.call({hook_name!r}); callbacks after it were not called)"
            )
            raise attributed(CallbackError, exc, message) from exc
