"""Published weft distributions and the names they provide: install hints only.

When a name is not installed, error messages look it up here to say which distribution to
``pip install``. This table is never used to select, order or load plugins: what is installed
is read from entry points alone (:mod:`weft.registry`), and core treats every plugin the same
whether it is listed here or not. Keep it as plain data.

.. versionadded:: 0.3
"""

from __future__ import annotations

#: distribution -> plugin kind (an entry-point group suffix, or ``"strategy classes"`` for the
#: classes :mod:`weft.strategies` exposes) -> names that distribution registers.
PUBLISHED: dict[str, dict[str, tuple[str, ...]]] = {
    "weft-ddp": {
        "strategies": ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true"),
        "strategy classes": ("DDPStrategy",),
    },
    "weft-fsdp": {
        "strategies": ("fsdp", "fsdp_cpu_offload"),
        "strategy classes": ("FSDPStrategy",),
    },
    "weft-precision": {
        "precisions": ("16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "16", "bf16", "64"),
    },
    "weft-accelerators": {"accelerators": ("cuda", "gpu", "mps")},
    "weft-loggers": {"loggers": ("tensorboard",)},
}


def provider(kind: str, name: str) -> str | None:
    """The published distribution that provides ``name`` of ``kind``, or ``None``."""
    for distribution, kinds in PUBLISHED.items():
        if name in kinds.get(kind, ()):
            return distribution
    return None


def published_names(kind: str) -> list[str]:
    """Every name of ``kind`` some published distribution provides (for "did you mean" hints)."""
    return sorted({name for kinds in PUBLISHED.values() for name in kinds.get(kind, ())})
