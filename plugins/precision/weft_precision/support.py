"""Which dtypes and autocast modes a device can run, asked without touching the device.

Two moments matter. ``Fabric(...)`` validates in the launching process, where a GPU
must not be initialised (the processes it starts would inherit a broken CUDA
state), so :func:`check_autocast` and :func:`check_device_type` look only at the
device *type*. What depends on the actual hardware (bf16 on an older GPU) is checked
by :func:`check_hardware` inside the process that owns the device, at
``fabric.setup()`` / ``fabric.init_module()``.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl

_SHORT = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "float64", torch.float32: "float32"}


def device_type_of(fabric: Any) -> str:
    """The device type (``"cpu"``, ``"cuda"``, ``"mps"``...) this Fabric computes on, asked of its accelerator."""
    device = fabric.hook.weft_accelerator_get_device(index=fabric.devices[0])
    return torch.device(device).type


def check_autocast(precision: str, device_type: str, dtype: torch.dtype) -> None:
    """Reject a mixed precision whose autocast the device type cannot run.

    :param precision: the precision's name, for the message.
    :param device_type: e.g. ``"cpu"``.
    :param dtype: the autocast dtype.
    :raises ConfigurationError: saying which precision to use instead.
    """
    fix = "Use precision='32-true' (or 'bf16-mixed' where bf16 is supported) instead."
    if not torch.amp.is_autocast_available(device_type):
        raise ConfigurationError(
            f"precision={precision!r} needs torch.autocast, which torch {torch.__version__} does not offer on "
            f"{device_type!r} devices. {fix}"
        )
    if device_type == "cuda":
        return  # fp16 autocast exists on every CUDA GPU; bf16 depends on the GPU: see check_hardware
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            probe = torch.autocast(device_type, dtype=dtype)
    except (RuntimeError, ValueError) as exc:
        raise ConfigurationError(f"precision={precision!r} cannot run on {device_type!r}: {exc} {fix}") from None
    # torch disables (with a warning) an autocast whose dtype the device type does not support.
    if not getattr(probe, "_enabled", True):
        raise ConfigurationError(
            f"precision={precision!r}: {device_type} autocast in torch {torch.__version__} does not support "
            f"{_SHORT.get(dtype, dtype)}. {fix}"
        )


def check_device_type(precision: str, device_type: str, dtype: torch.dtype) -> None:
    """Reject a storage dtype the device type cannot hold at all (float64 on Apple MPS)."""
    if device_type == "mps" and dtype is torch.float64:
        raise ConfigurationError(
            f"precision={precision!r}: Apple MPS devices have no float64 support. "
            "Use accelerator='cpu' for 64-bit training, or precision='32-true' on MPS."
        )


def check_hardware(precision: str, device_type: str, dtype: torch.dtype) -> None:
    """Check, in the process that owns the device, that the device computes in ``dtype``.

    Runs after the accelerator set the current device, so it asks about that GPU.
    """
    if dtype is not torch.bfloat16:
        return
    if device_type == "cuda":
        index = torch.cuda.current_device()
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch without the keyword: it then reports native support only
            native = torch.cuda.is_bf16_supported()
        if not native:
            major, minor = torch.cuda.get_device_capability(index)
            raise ConfigurationError(
                f"precision={precision!r}: GPU {index} ({torch.cuda.get_device_name(index)}, compute capability "
                f"{major}.{minor}) has no native bf16 support (it needs 8.0 or newer). "
                "Use precision='16-mixed' (fp16 autocast with loss scaling) instead."
            )
    elif device_type == "mps":
        try:
            torch.ones(1, dtype=dtype, device="mps") + 1
        except (RuntimeError, TypeError) as exc:
            raise ConfigurationError(
                f"precision={precision!r}: this Mac's MPS backend cannot compute in bf16 ({exc}); "
                "it needs macOS 14 or newer. Use precision='16-mixed' instead."
            ) from None


class default_dtype(contextlib.AbstractContextManager):
    """Set torch's default floating dtype inside the block (restoring the previous one after).

    A small class rather than a generator: it runs around every forward of a ``*-true`` precision.
    """

    __slots__ = ("dtype", "previous")

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __enter__(self) -> None:
        self.previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc: Any) -> None:
        torch.set_default_dtype(self.previous)


class DevicePrecision:
    """What every precision here shares: it learns the Fabric's device type when the Fabric
    is validated, and checks the hardware once, in the process that owns the device."""

    name = "?"
    dtype = torch.float32

    def __init__(self) -> None:
        self.device_type = "cpu"  # replaced by weft_validate with the Fabric's device type
        self._hardware_checked = False

    @hookimpl
    def weft_validate(self, fabric: Any) -> None:
        self.device_type = device_type_of(fabric)
        self.check_device_type()

    def check_device_type(self) -> None:
        """Reject this precision on ``self.device_type`` (without touching the device)."""
        raise NotImplementedError

    def _check_hardware(self) -> None:
        if not self._hardware_checked:
            check_hardware(self.name, self.device_type, self.dtype)
            self._hardware_checked = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device_type={self.device_type!r})"
