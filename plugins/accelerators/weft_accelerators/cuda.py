"""The ``cuda`` accelerator (also registered as ``gpu``)."""

from __future__ import annotations

import os

import torch

from weft.hookspecs import hookimpl
from weft_accelerators import CUDA_PRIORITY
from weft_accelerators.devices import parse_indices


def visible_cuda_devices() -> int:
    """How many CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applied).

    ``torch.cuda.device_count`` asks NVML where it can, so unlike
    ``torch.cuda.is_available`` it does not initialise CUDA in the launching process.
    """
    return torch.cuda.device_count()


def visibility_hint() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return ""
    return f" (CUDA_VISIBLE_DEVICES={value!r} limits what this process sees; indices count within that list)"


class CUDAAccelerator:
    """Computes on NVIDIA (or ROCm) GPUs, one process per device; processes talk over NCCL."""

    name = "cuda"

    @hookimpl
    def weft_accelerator_is_available(self) -> bool:
        return visible_cuda_devices() > 0

    @hookimpl
    def weft_accelerator_device_count(self) -> int:
        return visible_cuda_devices()

    @hookimpl
    def weft_accelerator_auto_priority(self) -> int:
        return CUDA_PRIORITY

    @hookimpl
    def weft_accelerator_parse_devices(self, devices):
        return parse_indices(devices, visible_cuda_devices(), "cuda", visibility_hint())

    @hookimpl
    def weft_accelerator_get_device(self, index: int) -> torch.device:
        return torch.device("cuda", index)

    @hookimpl
    def weft_accelerator_setup_device(self, device: torch.device) -> None:
        torch.cuda.set_device(device)

    @hookimpl
    def weft_accelerator_teardown(self) -> None:
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    @hookimpl
    def weft_accelerator_process_group_backend(self, device: torch.device) -> str:
        return "nccl" if torch.device(device).type == "cuda" else "gloo"
