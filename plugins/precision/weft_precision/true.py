"""True precisions: parameters, inputs and computation all in one dtype (no autocast).

``16-true`` and ``bf16-true`` halve memory at the cost of accuracy; ``64-true`` is for
numerics that need double precision. Floating inputs are cast to the dtype before
the forward, and tensors created inside the forward (``torch.zeros(...)``) get it
too, because the forward runs with it as torch's default dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from weft.hookspecs import hookimpl
from weft.records import PrecisionDtypes
from weft.utilities.apply import convert_floating
from weft_precision.support import DevicePrecision, check_device_type, default_dtype


class _TruePrecision(DevicePrecision):
    name = "true"
    dtype = torch.float32

    def check_device_type(self) -> None:
        check_device_type(self.name, self.device_type, self.dtype)

    @hookimpl
    def weft_precision_dtypes(self) -> PrecisionDtypes:
        return PrecisionDtypes(param=self.dtype, compute=self.dtype, reduce=self.dtype, autocast=False)

    @hookimpl
    def weft_precision_convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        self._check_hardware()
        return module.to(dtype=self.dtype)

    @hookimpl
    def weft_precision_module_init_context(self) -> default_dtype:
        self._check_hardware()
        return default_dtype(self.dtype)

    @hookimpl
    def weft_precision_forward_context(self) -> default_dtype:
        return default_dtype(self.dtype)

    @hookimpl
    def weft_precision_convert_input(self, data: Any) -> Any:
        return convert_floating(data, self.dtype)



class _HalfTruePrecision(_TruePrecision):
    @hookimpl
    def weft_precision_convert_output(self, data: Any) -> Any:
        # Losses and metrics computed from the outputs outside the model accumulate in
        # the default dtype (float32), not in 16 bits.
        return convert_floating(data, torch.get_default_dtype())


class Float16TruePrecision(_HalfTruePrecision):
    """``16-true``: everything in fp16. No loss scaling: prefer ``16-mixed`` for training.

    .. versionadded:: 0.1
    """

    name = "16-true"
    dtype = torch.float16


class BFloat16TruePrecision(_HalfTruePrecision):
    """``bf16-true``: everything in bf16 (parameters included).

    .. versionadded:: 0.1
    """

    name = "bf16-true"
    dtype = torch.bfloat16


class Float64TruePrecision(_TruePrecision):
    """``64-true``: everything in float64; outputs stay float64 so the loss keeps the precision.

    .. versionadded:: 0.1
    """

    name = "64-true"
    dtype = torch.float64
