"""Errors that say which callback or logger failed, yet stay catchable as what it raised.

Lightning Fabric lets a callback's or a logger's exception through unchanged, so scripts catch it
by its class (``except StopTraining:``, ``except OSError:``). weft raises, chained to the original,
an error that names the object that failed and is an instance of the original's class too (and
carries its attributes), so those ``except`` clauses keep working.

.. versionadded:: 0.2
"""

from __future__ import annotations

from weft.errors import WeftError


class AttributedError(WeftError):
    """Base of errors naming the object that failed; ``str()`` is weft's message."""

    _weft_message: str | None = None

    def __str__(self) -> str:
        return self._weft_message if self._weft_message is not None else super().__str__()


# (weft base, original class) -> a class deriving from both; made once per pair.
_combined: dict[tuple[type, type], type] = {}


def _builtin_ancestor(cls: type) -> type:
    return next(c for c in cls.__mro__ if c.__module__ == "builtins")


def _combine(base: type, cls: type) -> type:
    key = (base, cls)
    if key not in _combined:
        _combined[key] = type(cls.__name__, (base, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return _combined[key]


def attributed(base: type[AttributedError], exc: Exception, message: str) -> Exception:
    """An instance of ``base`` saying ``message`` that is also an instance of ``type(exc)``.

    Falls back to the nearest builtin class of ``exc`` (then to ``base`` alone) when the
    original class cannot be combined (an incompatible layout, or already a weft error).
    Raise it ``from exc``.
    """
    for cls in dict.fromkeys((type(exc), _builtin_ancestor(type(exc)))):
        if issubclass(cls, base) or cls is BaseException:
            continue
        try:
            combined = _combine(base, cls)
            # __new__ without __init__: the original class may take other constructor arguments.
            error = cls.__new__(combined, *exc.args)
            error.args = exc.args
            if hasattr(exc, "__dict__"):
                error.__dict__.update(exc.__dict__)
        except Exception:  # noqa: BLE001 - this class cannot be combined: try the next one
            continue
        error._weft_message = message
        return error
    error = base(message)
    error._weft_message = message
    return error
