"""The ``mps`` accelerator: Apple silicon GPUs (one device per machine)."""

from __future__ import annotations

import torch

from weft.hookspecs import hookimpl
from weft_accelerators import MPS_PRIORITY
from weft_accelerators.devices import parse_indices


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


class MPSAccelerator:
    """Computes on the Apple GPU. There is one, so ``devices`` can only be 1."""

    name = "mps"

    @hookimpl
    def weft_accelerator_is_available(self) -> bool:
        return _mps_available()

    @hookimpl
    def weft_accelerator_device_count(self) -> int:
        return 1 if _mps_available() else 0

    @hookimpl
    def weft_accelerator_auto_priority(self) -> int:
        return MPS_PRIORITY

    @hookimpl
    def weft_accelerator_parse_devices(self, devices):
        return parse_indices(devices, 1 if _mps_available() else 0, "mps")

    @hookimpl
    def weft_accelerator_get_device(self, index: int) -> torch.device:
        return torch.device("mps", index)

    @hookimpl
    def weft_accelerator_teardown(self) -> None:
        if _mps_available():
            torch.mps.empty_cache()

    @hookimpl
    def weft_accelerator_process_group_backend(self, device: torch.device) -> str:
        return "gloo"
