"""weft-fsdp: the ``fsdp`` and ``fsdp_cpu_offload`` strategies, on PyTorch's FSDP2 (``fully_shard``).

``from weft_fsdp import FSDPStrategy`` and pass it as ``Fabric(strategy=FSDPStrategy(...))``,
or select it by name: ``Fabric(strategy="fsdp")``.
"""

from __future__ import annotations

from weft_fsdp.strategy import FSDPStrategy

__all__ = ["FSDPStrategy", "fsdp_cpu_offload"]
__version__ = "0.1.0"


def fsdp_cpu_offload() -> FSDPStrategy:
    """The ``fsdp_cpu_offload`` preset: FSDP with parameters, gradients and optimizer state on the CPU."""
    return FSDPStrategy(cpu_offload=True, name="fsdp_cpu_offload")
