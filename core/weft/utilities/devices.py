"""Reading a ``devices=`` value, for accelerator plugins' ``weft_accelerator_parse_devices``.

.. versionadded:: 0.2
"""

from __future__ import annotations

from weft.errors import ConfigurationError


def parse_count(devices: object, available: int | None, kind: str) -> int | list[int]:
    """Validate a ``devices=`` value: an int/str count (``-1`` = all) or a list/``"0,2"`` of indices.

    :param devices: what the user passed: an int, ``-1``, ``"auto"``, ``"2"``, ``"0,2"``, ``"[0, 2]"`` or a list.
    :param available: how many devices exist (what ``-1`` and ``"auto"`` mean); ``None`` when that
        has no meaning (``devices=-1`` then raises).
    :param kind: the accelerator's name, for messages.
    :returns: a count (int) or explicit indices (list).
    :raises ConfigurationError: naming the value and what to pass instead.
    """
    if isinstance(devices, bool) or not isinstance(devices, (int, str, list, tuple)):
        raise ConfigurationError(
            f"devices={devices!r} is not understood: pass an int, -1 for all, 'auto', a list of indices or '0,2'"
        )
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return 1 if available is None else available
        if "," in text or text.startswith("["):
            try:
                return [int(p) for p in text.strip("[] ").split(",") if p.strip()]
            except ValueError:
                raise ConfigurationError(f"devices={devices!r} is not a list of device indices such as '0,2'") from None
        try:
            devices = int(text)
        except ValueError:
            raise ConfigurationError(
                f"devices={devices!r} is not understood: pass an int, -1 for all, 'auto', a list of indices or '0,2'"
            ) from None
    if isinstance(devices, (list, tuple)):
        if not devices or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            raise ConfigurationError(f"devices={devices!r}: a list must hold non-negative device indices")
        if len(set(devices)) != len(devices):
            raise ConfigurationError(f"devices={devices!r} lists a device twice")
        return list(devices)
    if devices == -1:
        if available is None:
            raise ConfigurationError(f"devices=-1 (all) is not meaningful for the {kind} accelerator; pass a count")
        return available
    if devices <= 0:
        raise ConfigurationError(f"devices={devices} must be a positive number of devices, -1 (all) or 'auto'")
    return devices
