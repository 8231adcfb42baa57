"""The ``cpu`` accelerator."""

from __future__ import annotations

import torch

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl
from weft.utilities.devices import parse_count  # public since 0.2; kept importable from here


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
