"""The ``cpu`` accelerator."""

from __future__ import annotations

import torch

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl


def parse_count(devices: object, available: int | None, kind: str) -> int | list[int]:
    """Validate a ``devices=`` value: an int/str count (``-1`` = all) or a list/``"0,2"`` of indices.

    :returns: a count (int) or explicit indices (list).
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


class CPUAccelerator:
    """Computes on the CPU. ``devices=N`` runs N processes, each on the CPU."""

    name = "cpu"

    @hookimpl
    def weft_accelerator_is_available(self) -> bool:
        return True

    @hookimpl
    def weft_accelerator_device_count(self) -> int:
        return 1

    @hookimpl
    def weft_accelerator_auto_priority(self) -> int:
        return 0

    @hookimpl
    def weft_accelerator_parse_devices(self, devices):
        parsed = parse_count(devices, available=None if devices != "auto" else 1, kind="cpu")
        if isinstance(parsed, list):
            raise ConfigurationError(
                f"devices={devices!r}: the cpu accelerator takes a number of processes, not device indices"
            )
        return list(range(parsed))

    @hookimpl
    def weft_accelerator_get_device(self, index: int) -> torch.device:
        return torch.device("cpu")

    @hookimpl
    def weft_accelerator_process_group_backend(self, device) -> str:
        return "gloo"
