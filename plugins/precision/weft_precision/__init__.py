"""weft's mixed and true reduced-precision plugins (``16-mixed``, ``bf16-mixed``,
``16-true``, ``bf16-true``, ``64-true``).

Fabric finds them by name through entry points; import the classes only to
configure one yourself, e.g. ``Fabric(plugins=[Float16MixedPrecision(init_scale=2**10)])``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "BFloat16MixedPrecision",
    "BFloat16TruePrecision",
    "Float16MixedPrecision",
    "Float16TruePrecision",
    "Float64TruePrecision",
]


def __getattr__(name: str):
    # Loaded on first use, so that importing the package does not import torch.
    if name in ("Float16MixedPrecision", "BFloat16MixedPrecision"):
        from weft_precision import mixed

        return getattr(mixed, name)
    if name in ("Float16TruePrecision", "BFloat16TruePrecision", "Float64TruePrecision"):
        from weft_precision import true

        return getattr(true, name)
    raise AttributeError(f"module 'weft_precision' has no attribute {name!r}")
