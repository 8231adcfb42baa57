"""The ``32-true`` precision: float32 everywhere. It implements only what it must,
so the forward, backward and optimizer step run with nothing added."""

from __future__ import annotations

import torch

from weft.hookspecs import hookimpl
from weft.records import PrecisionDtypes


class Float32Precision:
    name = "32-true"

    @hookimpl
    def weft_precision_dtypes(self) -> PrecisionDtypes:
        return PrecisionDtypes(param=torch.float32, compute=torch.float32, reduce=torch.float32)
