"""Turn a ``devices=`` value into local device indices, given how many devices exist."""

from __future__ import annotations

from weft.utilities.devices import parse_count
from weft.errors import ConfigurationError


def parse_indices(devices: object, count: int, kind: str, hint: str = "") -> list[int]:
    """Resolve ``devices`` against ``count`` visible devices of one kind.

    :param devices: an int (``-1`` = all), ``"auto"`` (all), ``"2"``, ``"-1"``, ``"0,2"`` or a list of indices.
    :param count: how many devices of this kind the process sees.
    :param kind: the accelerator's name, for messages.
    :param hint: appended to errors, e.g. what ``CUDA_VISIBLE_DEVICES`` holds.
    :returns: the local device indices, one per process on this node.
    :raises ConfigurationError: saying how many devices were found.
    """
    if count <= 0:
        raise ConfigurationError(f"No {kind} device was found{hint}, so devices={devices!r} cannot be honoured.")
    parsed = parse_count(devices, available=count, kind=kind)
    if isinstance(parsed, list):
        missing = [i for i in parsed if i >= count]
        if missing:
            raise ConfigurationError(
                f"devices={devices!r} names {kind} device{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(str, missing))}, but only {count} {_noun(count)} found "
                f"(indices 0..{count - 1}){hint}."
            )
        return parsed
    if parsed > count:
        raise ConfigurationError(
            f"devices={devices!r} asks for {parsed} {kind} devices, but only {count} {_noun(count)} found{hint}. "
            f"Pass devices={count} (or -1 for all)."
        )
    return list(range(parsed))


def _noun(count: int) -> str:
    return "was" if count == 1 else "were"
