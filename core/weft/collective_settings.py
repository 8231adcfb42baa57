"""The settings shared by weft's process group and its collectives: timeouts, on/off switches, reduce ops.

Timeouts come from an argument, else an environment variable, else a default, and are checked
(:func:`collective_timeout`, ``_seconds``); the ``WEFT_*`` switches are read by ``_flag_from_env``.
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
from typing import Any

from weft.errors import ConfigurationError


INIT_TIMEOUT_ENV = "WEFT_INIT_TIMEOUT"
COLLECTIVE_TIMEOUT_ENV = "WEFT_COLLECTIVE_TIMEOUT"
DEBUG_ENV = "WEFT_DEBUG_COLLECTIVES"
#: ``0`` turns off the same-call check of all_reduce/all_gather/broadcast (one small collective per call).
CHECK_ENV = "WEFT_CHECK_COLLECTIVES"
#: Rendezvous: every process must have started and reached the store within this time.
DEFAULT_INIT_TIMEOUT = datetime.timedelta(seconds=1800)
#: After setup: one collective (gradient all-reduce included) may wait this long.
DEFAULT_COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=600)

_REDUCE_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


# The longest wait a timedelta can hold (about 2.7 million years): anything above is a typo.
_MAX_SECONDS = datetime.timedelta.max.total_seconds()


def _seconds(value: Any, env: str, default: datetime.timedelta, name: str = "timeout") -> datetime.timedelta:
    """``value`` (seconds or a timedelta) as a timedelta; ``None`` reads ``env``, then ``default``.

    Zero, negative, NaN, infinite, boolean and non-numeric values raise
    :class:`~weft.errors.ConfigurationError` naming ``name`` (or ``env``) and the value: a
    timeout of 0 or NaN would fail every collective, and an infinite one is the hang it guards.
    """
    if value is None:
        text = os.environ.get(env, "") if env else ""
        if not text.strip():
            return default
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS):
            raise ConfigurationError(
                f"{env}={text!r} is not a positive, finite number of seconds; set it to e.g. {default.total_seconds():.0f}, or unset it"
            )
        return datetime.timedelta(seconds=seconds)
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS):
        raise ConfigurationError(
            f"{name}={value!r} must be a positive, finite number of seconds or a positive datetime.timedelta"
        )
    return value if isinstance(value, datetime.timedelta) else datetime.timedelta(seconds=seconds)


def collective_timeout(value: float | datetime.timedelta | None = None, name: str = "timeout") -> datetime.timedelta:
    """The bound on one collective: ``value`` if given, else ``WEFT_COLLECTIVE_TIMEOUT``, else 600 s.

    :param value: seconds or a ``timedelta``, e.g. a strategy's ``timeout=`` argument.
    :param name: the argument's name, for the error message.
    :raises ConfigurationError: zero, negative, NaN, infinite, boolean or non-numeric values,
        naming ``name`` (or the variable) and the value.
    """
    return _seconds(value, COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT, name)


def _flag_from_env(variable: str, default: bool) -> bool:
    """An on/off environment variable; anything but the usual spellings is an error naming it."""
    text = os.environ.get(variable, "")
    value = text.strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{variable}={text!r} is not understood: set it to 1 (on) or 0 (off), or unset it")


def _debug_from_env() -> bool:
    return _flag_from_env(DEBUG_ENV, default=False)
